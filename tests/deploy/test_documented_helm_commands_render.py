"""The `helm` commands of the README and the deploy and monitoring docs render the chart as typed.

No helm binary or cluster is here: each `helm install` / `helm upgrade` is parsed as Helm parses
it and rendered with the real Helm SDK (release name, namespace, install or upgrade, `-f` files),
so a wrong chart path, a release or namespace that differs from the install's, or values the
schema refuses fail here. tests/test_readme_commands.py runs the `kubetune` commands; every other
program in the README's console blocks is listed below with the reason it is not run, so a new
one cannot be skipped by accident.
"""

from __future__ import annotations

import argparse
import copy
import re
import shlex
from typing import Any

import pytest
import yaml

from ..conftest import REPO
from .chart import CHART_DIR, render_files

DOCS = {
    name: (REPO / name).read_text(encoding="utf-8") for name in ("README.md", "docs/deploy.md", "docs/monitoring.md")
}

# Programs of the README's console blocks that this machine cannot run, and why.
NOT_RUN_HERE = {
    "kubectl": "the Helm and operator blocks need a cluster (the files they apply are checked against the CRDs in "
    "tests/deploy); the sandbox quick start's kubectl commands run in tests/e2e/test_readme_quickstart.py",
    "python": "python -m kubetune_operator needs a cluster (tests/operator run it against the emulator)",
    "make": "make test is this test suite; make demo runs in tests/e2e/test_readme_quickstart.py",
}
SANDBOX_QUICK_START = "tests/e2e/test_readme_quickstart.py"
RUN_ELSEWHERE = {
    "kubetune": "tests/test_readme_commands.py and " + SANDBOX_QUICK_START,
    "helm": "this file",
    **dict.fromkeys(("mkdir", "cp", "export", "kill"), SANDBOX_QUICK_START),
}


def _monitoring_values() -> dict[str, Any]:
    """docs/monitoring.md's values-monitoring.yaml (the yaml block headed so)."""
    (block,) = [
        b
        for b in re.findall(r"```yaml\n(.*?)```", DOCS["docs/monitoring.md"], flags=re.S)
        if b.startswith("# values-monitoring.yaml")
    ]
    values: dict[str, Any] = yaml.safe_load(block)
    return values


# `-f` files the docs tell users to write: the values they hold.
USER_VALUE_FILES: dict[str, dict[str, Any]] = {"my-values.yaml": {}, "values-monitoring.yaml": _monitoring_values()}


def _helm_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helm", exit_on_error=False)
    parser.add_argument("action", choices=["install", "upgrade", "uninstall", "template"])
    parser.add_argument("release")
    parser.add_argument("chart", nargs="?")
    parser.add_argument("-n", "--namespace", required=True)
    parser.add_argument("--install", action="store_true")
    parser.add_argument("--create-namespace", action="store_true")
    parser.add_argument("--wait", action="store_true")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--show-only", action="append", default=[])
    return parser


def _set(values: dict[str, Any], assignment: str) -> None:
    """`--set a.b=true` as Helm applies it (booleans, integers and plain strings are all the docs use)."""
    path, raw = assignment.split("=", 1)
    *parents, leaf = path.split(".")
    for key in parents:
        values = values.setdefault(key, {})
    values[leaf] = int(raw) if raw.isdigit() else {"true": True, "false": False}.get(raw, raw)


def _argv(command: str) -> list[str]:
    """The command's words without a trailing `> file` redirect."""
    words = shlex.split(command)[1:]
    return words[: words.index(">")] if ">" in words else words


def helm_commands() -> list[tuple[str, str]]:
    """(document, command) for every `helm install|upgrade|uninstall|template` in code blocks or inline code."""
    found = []
    for name, text in DOCS.items():
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
            for line in block.splitlines():
                command = line.removeprefix("$ ").split("#")[0].strip()
                if re.match(r"helm (install|upgrade|uninstall|template) ", command):
                    found.append((name, command))
        found += [(name, c) for c in re.findall(r"`(helm (?:install|upgrade|uninstall) [^`]+)`", text)]
    return found


COMMANDS = helm_commands()
(INSTALL,) = [c for d, c in COMMANDS if d == "README.md" and c.startswith("helm install ")]


def test_the_docs_show_install_upgrade_and_uninstall() -> None:
    assert INSTALL == "helm install kubetune charts/kubetune -n kubetune --create-namespace --wait"
    actions = {shlex.split(c)[1] for _, c in COMMANDS}
    assert actions == {"install", "upgrade", "uninstall", "template"}


def test_every_readme_console_program_is_run_or_says_why_not() -> None:
    programs = set()
    for block in re.findall(r"```console\n(.*?)```", DOCS["README.md"], flags=re.S):
        programs |= {shlex.split(line[2:])[0] for line in block.splitlines() if line.startswith("$ ")}
    assert programs <= set(NOT_RUN_HERE) | set(RUN_ELSEWHERE), programs - set(NOT_RUN_HERE) - set(RUN_ELSEWHERE)
    assert "helm" in programs


@pytest.mark.parametrize(("document", "command"), COMMANDS, ids=[f"{d}: {c}" for d, c in COMMANDS])
def test_the_helm_command_renders_the_chart(document: str, command: str) -> None:
    args = _helm_parser().parse_args(_argv(command))
    installed = _helm_parser().parse_args(_argv(INSTALL))
    # An upgrade or uninstall of another release or namespace would miss the installed one.
    assert (args.release, args.namespace) == (installed.release, installed.namespace)
    if args.action == "uninstall":
        return
    assert (REPO / args.chart).resolve() == CHART_DIR.resolve(), "run from the repository root"
    installs = args.action == "install" or (args.action == "upgrade" and args.install)
    assert args.create_namespace or not installs, "a fresh namespace needs --create-namespace"
    # The catalog is a post-install hook of kinds this release's CRDs define: without --wait Helm maps
    # it before the CRDs are Established (seconds on control planes with several API servers).
    assert args.wait or not installs, "an install must --wait for the CRDs"
    values: dict[str, Any] = {}
    for path in args.values:
        values.update(copy.deepcopy(USER_VALUE_FILES[path]))
    for assignment in args.set:
        _set(values, assignment)
    files = render_files(values, name=args.release, namespace=args.namespace, upgrade=args.action == "upgrade")
    if args.show_only:
        shown = [f"{CHART_DIR.name}/{template}" for template in args.show_only]
        assert all(files.get(template, "").strip() for template in shown), f"{shown} render nothing"
        return
    objects = [o for t, text in files.items() if not t.endswith("NOTES.txt") for o in yaml.safe_load_all(text) if o]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["metadata"]["namespace"] == args.namespace
    notes = next(text for t, text in files.items() if t.endswith("NOTES.txt"))
    assert f"kubectl -n {args.namespace} rollout status deployment/{deployment['metadata']['name']}" in notes


def _objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    files = render_files(values)
    return [o for t, text in files.items() if not t.endswith("NOTES.txt") for o in yaml.safe_load_all(text) if o]


def test_tuning_the_alerts_takes_the_charts_rule_out_before_applying_the_copy() -> None:
    """docs/monitoring.md: the upgrade drops the chart's PrometheusRule; the template prints the same object to edit."""
    upgrade, template = [
        _helm_parser().parse_args(_argv(c))
        for d, c in COMMANDS
        if d == "docs/monitoring.md" and "prometheusrule" in c.lower()
    ]
    assert (upgrade.action, template.action) == ("upgrade", "template")
    values = copy.deepcopy(USER_VALUE_FILES["values-monitoring.yaml"])
    with_rule = _objects(values)
    for assignment in upgrade.set:
        _set(values, assignment)
    without = _objects(values)
    assert [o["kind"] for o in without if o["kind"] == "PrometheusRule"] == []
    (rule,) = [o for o in with_rule if o["kind"] == "PrometheusRule"]
    assert template.show_only == ["templates/prometheusrule.yaml"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack", "your Prometheus still selects the copy"
