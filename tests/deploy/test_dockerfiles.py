"""Both images, checked from their Dockerfiles (no Docker engine here): pinned bases, a numeric
non-root user, no secrets baked in, and the trainer command the operator renders resolves."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from kubetune_operator.render import render_attempt, render_preflight
from kubetune_operator.settings import OperatorSettings

from ..conftest import REPO
from ..operator.core_builders import JOB, SETTINGS, resolved, spec
from .chart import of_kind, render
from .dockerfile import Stage, image_tag, read

OPERATOR = REPO / "Dockerfile"
TRAINER = REPO / "trainer_image" / "Dockerfile"
SECRET_NAME = re.compile(r"TOKEN|KEY|PASSWORD|PASSWD|SECRET|CREDENTIAL", re.IGNORECASE)
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _user(stage: Stage) -> tuple[int, int]:
    (*_, user) = stage.all("USER")
    uid, _, gid = user.arguments.partition(":")
    assert uid.isdigit(), f"USER {user.arguments}: numeric, so runAsNonRoot can verify it"
    assert gid.isdigit(), f"USER {user.arguments}: a numeric group too"
    return int(uid), int(gid)


def _installs(stage: Stage) -> str:
    return " ".join(i.arguments for i in stage.all("RUN") if "pip install" in i.arguments)


def _copied(stage: Stage) -> list[str]:
    return [word for i in stage.all("COPY") if "--from" not in i.arguments for word in i.words()[:-1]]


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_every_base_image_is_pinned_by_an_exact_tag(path: Path) -> None:
    stages = read(path)
    aliases = {s.alias for s in stages if s.alias}
    for stage in stages:
        if stage.base in aliases:
            continue
        tag = image_tag(stage.base)
        assert tag is not None or "@sha256:" in stage.base, f"{stage.base}: untagged"
        assert tag not in ("latest", "stable", "slim"), f"{stage.base}: a moving tag"
        assert tag is None or re.search(r"\d+\.\d+\.\d+", tag), f"{stage.base}: pin a full version"


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_runs_as_a_numeric_non_root_user(path: Path) -> None:
    uid, gid = _user(read(path)[-1])
    assert uid > 0
    assert gid > 0


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_no_secret_is_baked_into_args_or_env(path: Path) -> None:
    for stage in read(path):
        assert [name for name in stage.variables() if SECRET_NAME.search(name)] == []


def test_operator_image_runs_the_operator_as_the_charts_user() -> None:
    stages = read(OPERATOR)
    final = stages[-1]
    (entrypoint,) = final.all("ENTRYPOINT")
    assert entrypoint.words() == ["python", "-m", "kubetune_operator"]
    built = " ".join(i.arguments for i in stages[0].all("RUN"))
    assert 'pip wheel --no-cache-dir --wheel-dir /wheels ".[operator]"' in built
    assert '--no-index --find-links=/wheels "kubetune[operator]"' in _installs(final), "only the wheels just built"
    (deployment,) = of_kind(render({}), "Deployment")
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == _user(final)
    exposed = {int(port) for i in final.all("EXPOSE") for port in i.words()}
    assert {8080, 9443} <= exposed


def test_trainer_image_user_is_the_operators_default_trainer_uid() -> None:
    uid, _ = _user(read(TRAINER)[-1])
    assert uid == OperatorSettings().run_as_user


def test_trainer_base_is_the_torch_the_project_pins_and_torch_is_never_reresolved() -> None:
    (stage,) = read(TRAINER)
    (pin,) = [r for r in PYPROJECT["project"]["optional-dependencies"]["trainer"] if r.startswith("torch")]
    version = pin.removeprefix("torch==")
    assert stage.base.startswith(f"pytorch/pytorch:{version}-cuda"), stage.base
    installs = _installs(stage)
    assert '".[trainer,wandb]"' in installs
    assert "--constraint /tmp/torch-constraint.txt" in installs, "pip may only keep the base image's torch"
    assert "torch==" not in installs.split("--constraint")[-1].split("&&")[0], "torch must not be named to pip"
    assert f"== '{version}'" in installs, "the build checks the torch it ends up with"


def test_trainer_image_installs_nothing_at_run_time() -> None:
    (stage,) = read(TRAINER)
    for instruction in stage.all("CMD") + stage.all("ENTRYPOINT"):
        assert "pip" not in instruction.words()


def _module_of(command: list[str]) -> str:
    return command[command.index("-m") + 1]


def test_commands_the_operator_renders_resolve_to_a_package_the_trainer_image_installs() -> None:
    """torchrun ... -m kubetune_trainer (and the preflight's python -m): the image copies that package
    into a project whose setuptools configuration installs it, with a __main__ to run."""
    job = resolved(spec())
    commands = [
        container["command"]
        for manifest in [
            *render_attempt(job, job=JOB, attempt=1, settings=SETTINGS),
            *render_preflight(job, job=JOB, settings=SETTINGS),
        ]
        if manifest["kind"] == "Job"
        for container in manifest["spec"]["template"]["spec"]["containers"]
    ]
    assert {command[0] for command in commands} == {"torchrun", "python"}  # torchrun comes with the base's torch
    (stage,) = read(TRAINER)
    copied = _copied(stage)
    found = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    for module in {_module_of(command) for command in commands}:
        package = module.split(".")[0]
        sources = [f"{root}/{package}" for root in found["where"] if (REPO / root / package).is_dir()]
        assert len(sources) == 1, f"{package} is not a package of this project"
        assert sources[0] in copied, f"{sources[0]} is not copied into the trainer image"
        assert any(re.fullmatch(p.replace("*", ".*"), package) for p in found["include"])
        assert (REPO / sources[0] / "__main__.py").is_file(), f"python -m {module} needs a __main__"
    assert "pyproject.toml" in copied


def test_dockerignore_keeps_only_what_the_images_copy() -> None:
    lines = [
        line
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "**"
    kept = {line.removeprefix("!").removesuffix("/**") for line in lines if line.startswith("!")}
    copied = set(_copied(read(OPERATOR)[0])) | set(_copied(read(TRAINER)[0]))
    assert {path.rstrip("/").removeprefix("./") for path in copied} <= kept
