"""deploy/: the Prometheus scrape config and the Grafana dashboard parse, and every metric
the dashboard queries is one burrow exports (``burrow.metrics.CATALOGUE``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from burrow.metrics import CATALOGUE

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAME = re.compile(r"\bburrow_[a-z_]+\b")


def exported_names() -> set[str]:
    """The sample names Prometheus sees for every series in the catalogue."""
    names: set[str] = set()
    for spec in CATALOGUE:
        if spec.kind == "histogram":
            names |= {f"{spec.name}_bucket", f"{spec.name}_sum", f"{spec.name}_count"}
        else:
            names.add(spec.name)
    return names


def expressions(node: Any) -> list[str]:
    """Every ``expr`` and templating ``query`` string in the dashboard."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                found.append(value)
            else:
                found += expressions(value)
    elif isinstance(node, list):
        for item in node:
            found += expressions(item)
    return found


def test_prometheus_config_scrapes_the_api_and_the_workers() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"burrow-api", "burrow-workers"}
    for job in jobs.values():
        assert job["metrics_path"] == "/metrics"
        assert job["static_configs"][0]["targets"]


def test_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "burrow-dashboard.json").read_text())
    queried = {name for expr in expressions(dashboard) for name in NAME.findall(expr)}
    assert queried, "the dashboard queries no burrow metric"
    assert queried - exported_names() == set()


def test_dashboard_covers_the_main_series() -> None:
    """Throughput, depth, run time and wait percentiles, in flight, confirm latency, HTTP,
    webhooks and RPC each have a panel."""
    dashboard = json.loads((DEPLOY / "grafana" / "burrow-dashboard.json").read_text())
    text = "\n".join(expressions(dashboard))
    for needed in (
        "burrow_tasks_completed_total",
        "burrow_queue_depth",
        "histogram_quantile(0.95, sum by (le) (rate(burrow_task_duration_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(burrow_task_queue_wait_seconds_bucket",
        "burrow_tasks_in_flight",
        "burrow_publish_confirm_seconds_bucket",
        "burrow_http_requests_total",
        "burrow_webhook_deliveries_total",
        "burrow_rpc_requests_total",
        "burrow_rpc_duration_seconds_bucket",
    ):
        assert needed in text, needed
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
