"""The Grafana dashboard file is one Grafana lays out and fills in without surprises.

Unique panel ids, panels inside the 24-column grid and not overlapping, every query on the
dashboard's data source variable, and every `$variable` a query uses defined by the dashboard
(or one of Grafana's own). The live Prometheus test runs the queries themselves.
"""

from __future__ import annotations

import re

from .dashboard import load_dashboard, panel_queries, panels

GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def _cells(grid: dict[str, int]) -> set[tuple[int, int]]:
    return {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}


def test_panels_have_unique_ids_and_fit_the_grid_without_overlapping() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "kubetune"
    every = dashboard["panels"]
    ids = [panel["id"] for panel in every]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = _cells(grid)
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_query_uses_the_data_source_variable_and_known_variables() -> None:
    dashboard = load_dashboard()
    defined = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert "datasource" in defined
    for panel in panels(dashboard):
        assert panel["description"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"]), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    for query in panel_queries(dashboard):
        used = set(VARIABLE.findall(query.expr))
        assert used <= defined | GRAFANA_BUILTINS, f"{query.panel}: {sorted(used - defined - GRAFANA_BUILTINS)}"
