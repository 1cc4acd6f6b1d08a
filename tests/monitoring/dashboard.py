"""The Grafana dashboard's queries, as Prometheus receives them once Grafana has filled them in."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..conftest import REPO

DASHBOARD_FILE = REPO / "charts" / "kubetune" / "files" / "grafana" / "kubetune.json"
METRIC_NAME = re.compile(r"\bkubetune_[a-z0-9_]+\b")
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+), *(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$")


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref: str
    expr: str


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return dashboard


def panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows hold none), including those inside collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    return [
        PanelQuery(panel=panel["title"], ref=target["refId"], expr=target["expr"])
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]


def variable_queries(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """name -> query of the dashboard's query variables (`label_values(...)`)."""
    return {
        variable["name"]: variable["query"]["query"]
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    }


def label_values(query: str) -> tuple[str, str]:
    """(series selector, label) of a `label_values(selector, label)` variable query."""
    match = LABEL_VALUES.match(query)
    assert match is not None, f"not a label_values(selector, label) query: {query!r}"
    return match["selector"], match["label"]


def fill_in(expr: str, variables: Mapping[str, str]) -> str:
    """`expr` with Grafana's variables replaced as Grafana would: `$name` and `${name}`, longest name first."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    assert "$" not in expr, f"an unknown variable is left in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The kubetune metric names an expression reads."""
    return set(METRIC_NAME.findall(expr))
