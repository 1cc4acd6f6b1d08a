"""promtool and the alert rules it checks: the tools are required (a missing one fails, never skips)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ..conftest import REPO

ALERTS_FILE = REPO / "charts" / "kubetune" / "files" / "prometheus" / "alerts.yaml"
UNIT_TESTS = Path(__file__).with_name("alerts_test.yaml")
STATIC_ANNOTATIONS = ("description", "runbook")
ALERTS = frozenset(
    {"KubetuneJobFailureRateHigh", "KubetuneJobStuckQueued", "KubetuneTrainerHeartbeatStale", "KubetuneOperatorDown"}
)


def system_tool(name: str) -> str:
    """The path of `name`; fails the test naming how to get it (`make test` installs it: make system-tools)."""
    path = shutil.which(name)
    assert path is not None, f"{name} is not on PATH: install Debian's prometheus package (`make system-tools` does)"
    return path


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [system_tool("promtool"), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def alert_rules(groups: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """alertname -> rule, over every group."""
    return {rule["alert"]: rule for group in groups["groups"] for rule in group["rules"] if "alert" in rule}


def write_unit_tests(rules: Path, *, into: Path) -> Path:
    """`alerts_test.yaml` run against `rules`: each expected alert gets the rule's plain-text annotations."""
    spec = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))
    by_name = alert_rules(yaml.safe_load(rules.read_text(encoding="utf-8")))
    spec["rule_files"] = [str(rules)]
    for group in spec["tests"]:
        for case in group["alert_rule_test"]:
            static = {key: by_name[case["alertname"]]["annotations"][key] for key in STATIC_ANNOTATIONS}
            for alert in case.get("exp_alerts") or []:
                alert["exp_annotations"] = {**static, **alert.get("exp_annotations", {})}
    path = into / "alerts_test.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path
