"""The operator image installs `kubetune[operator]` only: the operator must start without the trainer's stack.

The dev environment has every extra installed, so an operator module importing transformers,
huggingface_hub or packaging at module level would pass every other test and crash the image at
start. Here `python -m kubetune_operator` runs in a subprocess where every module that only the
trainer and wandb extras bring is unimportable.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions

from packaging.requirements import Requirement

BLOCKER = """
import runpy, sys, importlib.abc
BLOCKED = frozenset(sys.argv[1].split(","))
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not in the operator image")
sys.meta_path.insert(0, Blocked())
sys.argv = ["kubetune_operator", *sys.argv[2:]]
runpy.run_module("kubetune_operator", run_name="__main__")
"""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements: list[str], *, extras: set[str]) -> set[str]:
    """Distributions these requirements install, transitively (as pip would, markers evaluated)."""
    seen: set[str] = set()
    todo = [(Requirement(r), extras) for r in requirements]
    while todo:
        requirement, active = todo.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in active | {""}):
            continue
        name = _canonical(requirement.name)
        if name in seen or name == "kubetune":
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        todo += [(Requirement(r), set(requirement.extras)) for r in requires]
    return seen


def _extra(name: str) -> list[str]:
    requires = distribution("kubetune").requires or []
    base = [r for r in requires if Requirement(r).marker is None]
    return base + [r for r in requires if (m := Requirement(r).marker) and m.evaluate({"extra": name})]


def modules_only_the_trainer_brings() -> set[str]:
    operator = _closure(_extra("operator"), extras={"operator"})
    trainer = _closure(_extra("trainer") + _extra("wandb"), extras={"trainer", "wandb"})
    return {
        module
        for module, owners in packages_distributions().items()
        if any(_canonical(o) in trainer - operator for o in owners)
        and not any(_canonical(o) in operator for o in owners)
    }


def _run_operator(*args: str) -> subprocess.CompletedProcess[str]:
    blocked = modules_only_the_trainer_brings()
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(sorted(blocked)), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_blocked_set_is_the_trainer_stack() -> None:
    blocked = modules_only_the_trainer_brings()
    assert {"torch", "transformers", "huggingface_hub", "peft", "wandb", "s3fs"} <= blocked
    assert not {"kopf", "aiohttp", "prometheus_client", "pydantic", "yaml"} & blocked


def test_the_operator_starts_with_only_the_operator_extra() -> None:
    """--help parses the chart's flags after every operator module (handlers, webhook, metrics) is imported."""
    done = _run_operator("--help")
    assert done.returncode == 0, done.stderr
    assert "--webhook-unmanaged" in done.stdout


def test_the_blocker_really_blocks() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKER.replace('runpy.run_module("kubetune_operator"', 'runpy.run_module("torch"'),
            "torch",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "torch is not in the operator image" in done.stderr
