"""The README's `kubetune` commands run, and print what the README shows."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune_operator.api.errors import validate
from kubetune_operator.api.resources import FineTuneJob

from .conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
KUBETUNE = Path(sys.executable).parent / "kubetune"

# The file the README's `kubetune validate job.yaml` example checks.
BAD_JOB = """\
apiVersion: kubetune.dev/v1alpha1
kind: FineTuneJob
metadata: {name: job}
spec:
  model: qwen3-4b
  trainingFile: ftp://x
  learningRate: 0.0001
"""


def console_blocks() -> list[tuple[str, list[str]]]:
    """(command, shown output lines) for every `$ kubetune ...` in the README's console blocks."""
    found = []
    for block in re.findall(r"```console\n(.*?)```", README, flags=re.S):
        command: str | None = None
        shown: list[str] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                if command:
                    found.append((command, shown))
                command, shown = line[2:], []
            else:
                shown.append(line)
        if command:
            found.append((command, shown))
    return [(c, s) for c, s in found if c.startswith("kubetune ")]


COMMANDS = console_blocks()


def test_the_readme_shows_kubetune_commands() -> None:
    assert len(COMMANDS) >= 4


@pytest.mark.parametrize(("command", "shown"), COMMANDS, ids=[c for c, _ in COMMANDS])
def test_readme_command_prints_what_the_readme_shows(tmp_path: Path, command: str, shown: list[str]) -> None:
    (tmp_path / "job.yaml").write_text(BAD_JOB)
    argv = shlex.split(command)
    done = subprocess.run([str(KUBETUNE), *argv[1:]], cwd=tmp_path, capture_output=True, text=True, check=False)
    printed = (done.stdout + done.stderr).splitlines()
    assert done.returncode == (1 if argv[1] == "validate" else 0), done.stderr
    for line in shown:
        if line.endswith("..."):
            assert any(p.startswith(line[:-3]) for p in printed), line
        else:
            assert line in printed, line


def test_the_readme_manifest_is_a_valid_finetunejob() -> None:
    (manifest,) = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
    job = validate(FineTuneJob, yaml.safe_load(manifest), kind="FineTuneJob")
    assert job.spec.model == "auto"
