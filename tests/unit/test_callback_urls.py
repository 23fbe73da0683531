"""The SSRF guard of callback URLs: parsing, address classes, the allowlist, and the
submit-time check on literal addresses (no DNS server needed)."""

from __future__ import annotations

import ipaddress

import pytest

from burrow.config import Settings
from burrow.errors import ConfigurationError
from burrow.tasks.callbacks import (
    CallbackRefused,
    callback_header,
    check_target,
    is_public,
    parse_allowlist,
    parse_callback_url,
)
from burrow.webhooks.urls import check_callback_url, check_submitted_callback, literal_address


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://example.com/",
        "ftp://example.com/",
        "javascript:alert(1)",
        "data:text/plain,hi",
        "http+unix://%2Ftmp%2Fsock/",
        "http://good.example@127.0.0.1/",
        "http://user:pw@example.com/",
        "http://example.com/a b",
        "http://example.com/\t",
        "http://example.com\\@127.0.0.1/",
        "http://example.com/\n",
        "http:///nohost",
        "http://example.com:99999/",
        "http://example.com/" + "a" * 2048,
        "",
    ],
)
def test_malformed_or_foreign_urls_are_refused(url: str) -> None:
    with pytest.raises(CallbackRefused):
        parse_callback_url(url)


def test_host_is_normalised_and_port_defaulted() -> None:
    target = parse_callback_url("HTTPS://Example.COM./hook?x=1")
    assert (target.scheme, target.host, target.port, target.explicit_port) == (
        "https",
        "example.com",
        443,
        False,
    )
    assert parse_callback_url("http://bücher.example/").host == "xn--bcher-kva.example"
    assert parse_callback_url("http://example.com:8080/").port == 8080


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "0.0.0.0",  # noqa: S104 - an address under test, nothing binds
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "198.18.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "::1",
        "::",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
        "2001:db8::1",
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0x7f000001", "017700000001", "127.1", "127.000.000.001", "0", "[::1]"],
)
def test_encoded_loopback_forms_are_read_as_addresses(host: str) -> None:
    address = literal_address(host)
    assert address is not None
    assert not is_public(address)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://0/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://017700000001/",
        "http://127.1/",
        "http://127.000.000.001/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://8.8.8.8:6379/",
        "http://8.8.8.8:22/",
    ],
)
def test_submit_check_refuses(url: str) -> None:
    with pytest.raises(CallbackRefused):
        check_callback_url(url, "")


def test_submit_check_passes_a_public_address() -> None:
    assert check_callback_url("https://8.8.8.8/hook", "") == "https://8.8.8.8/hook"


def test_allowlist_lifts_address_and_port_rules_for_what_it_names() -> None:
    assert check_callback_url("http://127.0.0.1:18080/h", "127.0.0.1") == (
        "http://127.0.0.1:18080/h"
    )
    assert check_callback_url("http://127.0.0.1:18080/h", "127.0.0.1:18080")
    assert check_callback_url("http://10.2.3.4/h", "10.0.0.0/8")
    assert check_callback_url("http://[::1]:8080/h", "[::1]:8080")
    with pytest.raises(CallbackRefused):  # another port than the entry's
        check_callback_url("http://127.0.0.1:18081/h", "127.0.0.1:18080")
    with pytest.raises(CallbackRefused):  # outside the network
        check_callback_url("http://11.0.0.1:81/h", "10.0.0.0/8")


def test_a_network_entry_needs_every_address_inside() -> None:
    target = parse_callback_url("http://mixed.example/")
    both = [ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("192.168.0.1")]
    with pytest.raises(CallbackRefused):
        check_target(target, both, parse_allowlist("10.0.0.0/8"))
    check_target(target, both, parse_allowlist("mixed.example"))  # by name: any address


def test_allowlist_refuses_a_malformed_port() -> None:
    with pytest.raises(ConfigurationError, match="BURROW_CALLBACK_ALLOWLIST"):
        parse_allowlist("127.0.0.1:notaport")


def test_submitted_callbacks_need_a_secret() -> None:
    settings = Settings(callback_allowlist="127.0.0.1", webhook_secret="")
    with pytest.raises(CallbackRefused, match="BURROW_WEBHOOK_SECRET"):
        check_submitted_callback(settings, "http://127.0.0.1:8080/")


def test_default_callback_url_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="BURROW_WEBHOOK_SECRET"):
        Settings(callback_url="https://example.com/hook")


def test_callback_header_reads_text_and_bytes() -> None:
    assert callback_header({"x-burrow-callback-url": "http://a/"}) == "http://a/"
    assert callback_header({"x-burrow-callback-url": b"http://b/"}) == "http://b/"
    assert callback_header({"x-burrow-callback-url": 5}) is None
    assert callback_header(None) is None
