"""The Grafana dashboard in docs/ reads only metrics the host exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from durableflow_runtime.engine import Engine
from durableflow_runtime.metrics import Metrics
from durableflow_runtime.store.sqlite import SqliteStore

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "durableflow.json"
# counters and histograms are queried by their exposition names
_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_info")


def _exported(tmp_path: Path) -> set[str]:
    metrics = Metrics(Engine(SqliteStore(tmp_path / "unused.db"), []))
    names = {"durableflow_lease_renewals", "durableflow_leases_lost"}  # PostgreSQL only
    for collector_family in metrics.registry.collect():
        names.add(collector_family.name)
    return names


def test_every_panel_query_names_an_exported_metric(tmp_path: Path) -> None:
    """Each panel has PromQL targets, and every durableflow_* name in them is exported."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] == "durableflow" and dashboard["panels"]
    exported = _exported(tmp_path)
    for panel in dashboard["panels"]:
        assert panel["targets"] and panel["datasource"]["type"] == "prometheus", panel["title"]
        for target in panel["targets"]:
            for name in re.findall(r"durableflow_[a-z_]+", target["expr"]):
                base = name
                for suffix in _SUFFIXES:
                    base = base.removesuffix(suffix)
                assert base in exported or name in exported, (panel["title"], name)
