"""deploy/grafana/flotilla.json: a well-formed Grafana dashboard whose queries read series that
exist (exported by a service or recorded by the shipped rules), laid out without overlaps. The
queries also run against a real Prometheus in tests/observability/test_running_stack.py."""

from __future__ import annotations

import json
from typing import Any

from tests.deploy.metric_names import unknown_names
from tests.support.processes import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "flotilla.json"


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def queries() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"]
            for target in panel.get("targets", [])]


def test_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] == "Flotilla"
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"], panel["title"]
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "pool", "model"} <= variables


def test_dashboard_queries_read_series_that_exist() -> None:
    exprs = queries()
    assert len(exprs) >= 20
    missing = {name for expr in exprs for name in unknown_names(expr)}
    assert missing == set()
