"""The operator image holds the operator and the trainer's contract: no sandbox package, no torch.

No Docker engine runs here, so the image's install is replayed from the Dockerfile itself: the build
stage's COPY sources are copied into a folder as the Dockerfile lays them out, and its `pip wheel`
runs there (without dependencies: nothing is fetched). The wheel is what the final stage installs.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from . import dockerfile
from .test_operator_image_needs_only_the_operator_extra import _canonical, _closure

ROOT = Path(__file__).resolve().parents[2]
ML_STACK = {"torch", "transformers", "accelerate", "peft", "safetensors", "tokenizers"}
SANDBOX_STACK = {"kmock", "jsonschema", "cryptography"}


def _stages() -> tuple[dockerfile.Stage, dockerfile.Stage]:
    build, final = dockerfile.read(ROOT / "Dockerfile")
    return build, final


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the Dockerfile's build stage makes, built from only what it COPYs."""
    build, _ = _stages()
    (workdir,) = [i.words()[0] for i in build.all("WORKDIR")]
    context = tmp_path_factory.mktemp("image") / workdir.lstrip("/")
    context.mkdir(parents=True)
    for copy in build.all("COPY"):
        *sources, target = copy.words()
        assert not any(s.startswith("--") for s in sources), f"the build stage copies from elsewhere: {copy}"
        into = context / target
        for source in sources:
            if (ROOT / source).is_dir():  # Docker copies a folder's contents into the target
                shutil.copytree(ROOT / source, into, dirs_exist_ok=True)
            elif target.endswith("/"):
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, into / Path(source).name)
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, into)
    (command,) = [i.arguments for i in build.all("RUN") if "pip wheel" in i.arguments]
    target = shlex.split(command)[-1]
    assert target == ".[operator]", command
    out = context.parent / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            target,
        ],
        cwd=context,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("kubetune-*.whl")
    return built


def test_the_image_installs_only_the_operator_extra() -> None:
    _, final = _stages()
    (install,) = [i.arguments for i in final.all("RUN") if "pip install" in i.arguments]
    assert '"kubetune[operator]"' in install
    assert "--no-index" in install  # only the build stage's wheels: nothing else can come in


def test_the_wheel_holds_no_sandbox_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        packages = {name.split("/")[0] for name in archive.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"kubetune_operator", "kubetune_trainer"}
    assert "kubetune_sandbox" not in packages


def test_the_wheels_operator_requirements_bring_no_torch_and_no_sandbox_stack(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = Parser().parsestr(archive.read(metadata).decode()).get_all("Requires-Dist") or []
    installed = [r for r in requires if (m := Requirement(r).marker) is None or m.evaluate({"extra": "operator"})]
    direct = {_canonical(Requirement(r).name) for r in installed}
    assert {"kopf", "aiohttp", "prometheus-client", "pydantic"} <= direct
    everything = _closure(installed, extras={"operator"})
    assert not everything & (ML_STACK | SANDBOX_STACK), everything & (ML_STACK | SANDBOX_STACK)
