"""Every object NOTES.txt's commands name is one the chart rendered, in the namespace the command uses."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml

from .chart import render_files

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "other-port-and-namespaces": {"metrics": {"port": 9090}, "watchNamespaces": ["ml"], "replicas": 2},
}


@pytest.mark.parametrize("release", ["kubetune", "ml-ops"])
@pytest.mark.parametrize("values", list(VALUE_SETS.values()), ids=list(VALUE_SETS))
def test_notes_commands_name_what_the_chart_rendered(release: str, values: dict[str, Any]) -> None:
    files = render_files(values, name=release, namespace="platform")
    notes = next(text for path, text in files.items() if path.endswith("NOTES.txt"))
    rendered = {
        (obj["kind"].lower(), obj["metadata"]["name"], obj["metadata"].get("namespace"))
        for path, text in files.items()
        if not path.endswith("NOTES.txt")
        for obj in yaml.safe_load_all(text)
        if obj
    }
    commands = [
        shlex.split(line.strip().rstrip("&")) for line in notes.splitlines() if line.strip().startswith("kubectl ")
    ]
    named = 0
    for words in commands:
        namespace = words[words.index("-n") + 1] if "-n" in words else None
        for word in words:
            if match := re.fullmatch(r"(deployment|service)/([a-z0-9-]+)", word):
                assert (match[1], match[2], namespace) in rendered, (words, sorted(rendered))
                named += 1
        if "port-forward" in words:
            service = next(w for w in words if w.startswith("service/")).split("/")[1]
            port = words[words.index(f"service/{service}") + 1]
            assert port == str(values.get("metrics", {}).get("port", 8080))
    assert named >= 2
    watched = values.get("watchNamespaces")
    job_namespace = watched[0] if watched else "default"
    assert f"kubectl apply -n {job_namespace} -f examples/quickstart.yaml" in notes
