"""``bench.ab``'s variant syntax: ``name=KEY:value,...``."""

from __future__ import annotations

import argparse

import pytest
from bench.ab import parse_variant


def test_a_variant_names_its_environment_overrides() -> None:
    assert parse_variant("old=PYTHONPATH:/x/src,BURROW_PREFETCH:64") == (
        "old",
        {"PYTHONPATH": "/x/src", "BURROW_PREFETCH": "64"},
    )


def test_a_variant_without_overrides_runs_the_environment_as_is() -> None:
    assert parse_variant("new=") == ("new", {})


@pytest.mark.parametrize("text", ["new", "=X:1", "new=PYTHONPATH"])
def test_malformed_variants_say_what_is_expected(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected"):
        parse_variant(text)
