"""The alert rules pass `promtool check rules`; `promtool test rules` fires each alert when it should, and only then."""

from __future__ import annotations

from pathlib import Path

import yaml

from .promtool import ALERTS, ALERTS_FILE, STATIC_ANNOTATIONS, UNIT_TESTS, alert_rules, promtool, write_unit_tests


def test_promtool_checks_the_rules_file() -> None:
    checked = promtool("check", "rules", ALERTS_FILE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout


def test_every_alert_has_a_severity_and_says_what_to_check() -> None:
    rules = alert_rules(yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8")))
    assert set(rules) == ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", *STATIC_ANNOTATIONS}, name
        # The unit tests copy these verbatim into their expectations: no template may hide in them.
        for key in STATIC_ANNOTATIONS:
            assert "{{" not in annotations[key], (name, key)
        assert "kubectl" in annotations["runbook"], name


def test_each_alert_fires_in_one_unit_test_and_stays_silent_in_another(tmp_path: Path) -> None:
    cases = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))["tests"]
    fired = {c["alertname"] for g in cases for c in g["alert_rule_test"] if c.get("exp_alerts")}
    silent = {c["alertname"] for g in cases for c in g["alert_rule_test"] if not c.get("exp_alerts")}
    assert fired == silent == ALERTS

    tested = promtool("test", "rules", write_unit_tests(ALERTS_FILE, into=tmp_path))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
