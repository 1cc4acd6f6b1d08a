"""`kubetune jobs serve NAME`: --dry-run prints the YAML the operator would create; without it the objects are
created (once: a second run finds them unchanged); refusals name the job and what to do, exit 1, create nothing.

The real operator takes a job to Succeeded against the emulator; the command talks to the same emulator
through a kubeconfig, with the `kubernetes` library, as a user's terminal would.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from pathlib import Path
from typing import Any

import kmock
import yaml

from kubetune_operator.cli import main
from kubetune_sandbox.emulator import ApiEmulator

from .cluster_actors import NAMESPACE, Actors, trainer_succeeded, wait_for
from .conftest import SERVICES, RunningOperator, job_manifest, status_of
from .journeys import pass_preflight, to_running, until_phase

DEPLOYMENTS = kmock.resource("apps/v1/deployments")


def _kubeconfig(cluster: ApiEmulator, folder: Path) -> Path:
    server = str(cluster.url).rstrip("/")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "user", "user": {"token": "not-checked"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "user", "namespace": NAMESPACE}}],
        "current-context": "emulator",
    }
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def _kubetune(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    """`kubetune jobs ...` in a thread (the library blocks; the emulator answers in this loop)."""

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["jobs", *args, "--kubeconfig", str(kubeconfig)])
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(run)


async def _succeed(cluster: ApiEmulator, actors: Actors, name: str, **spec: Any) -> None:
    (pod,) = await to_running(cluster, actors, name, **spec)
    await actors.terminate(pod, exit_code=0, message=trainer_succeeded())
    await actors.job_condition(f"{name}-a1", "Complete")
    await until_phase(cluster, name, "Succeeded")


async def test_dry_run_prints_what_the_operator_creates_and_serve_creates_it_once(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator, tmp_path: Path
) -> None:
    kubeconfig = _kubeconfig(cluster, tmp_path)
    await _succeed(cluster, actors, "chat")  # no spec.serve: the user serves it afterwards

    code, out, err = await _kubetune(kubeconfig, "serve", "chat", "--dry-run")
    assert code == 1
    assert "FineTuneJob chat has no spec.serve" in err
    assert "--kind" in err

    code, out, err = await _kubetune(kubeconfig, "serve", "chat", "--dry-run", "--kind", "vllm")
    assert code == 0, err
    deployment, service = yaml.safe_load_all(out)
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    assert deployment["metadata"]["name"] == "chat"
    assert cluster.live(DEPLOYMENTS, NAMESPACE, "chat") is None, "--dry-run creates nothing"

    code, out, err = await _kubetune(kubeconfig, "serve", "chat", "--kind", "vllm", "--no-owned")
    assert code == 0, err
    assert out.splitlines() == ["deployment.apps/chat created", "service/chat created"]
    made = cluster.live(DEPLOYMENTS, NAMESPACE, "chat")
    assert made is not None
    assert made["spec"] == deployment["spec"], "the printed manifest is what gets created"
    assert "ownerReferences" not in made["metadata"]
    assert cluster.live(SERVICES, NAMESPACE, "chat") is not None

    code, out, err = await _kubetune(kubeconfig, "serve", "chat", "--kind", "vllm", "--no-owned")
    assert code == 0, err
    assert out.splitlines() == ["deployment/chat unchanged", "service/chat unchanged"]


async def test_the_operators_manifest_and_the_dry_run_agree(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator, tmp_path: Path
) -> None:
    kubeconfig = _kubeconfig(cluster, tmp_path)
    await _succeed(cluster, actors, "chat", serve={"kind": "vllm"})
    await wait_for(lambda: (status_of(cluster, "chat").get("serving") or {}).get("state") == "Created")
    code, out, err = await _kubetune(kubeconfig, "serve", "chat", "--dry-run")
    assert code == 0, err
    printed, _ = yaml.safe_load_all(out)
    made = cluster.live(DEPLOYMENTS, NAMESPACE, "chat")
    assert made is not None
    assert made["spec"] == printed["spec"]
    assert made["metadata"]["ownerReferences"] == printed["metadata"]["ownerReferences"]


async def test_serving_a_job_that_has_not_succeeded_is_refused_and_creates_nothing(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator, tmp_path: Path
) -> None:
    kubeconfig = _kubeconfig(cluster, tmp_path)
    await actors.apply_job(job_manifest("early", model="no-such-template"))
    await wait_for(lambda: status_of(cluster, "early").get("phase") == "Pending")
    code, _, err = await _kubetune(kubeconfig, "serve", "early", "--dry-run", "--kind", "vllm")
    assert code == 1
    assert "FineTuneJob early is Pending and not admitted yet" in err

    await pass_preflight(cluster, actors, "running")
    code, _, err = await _kubetune(kubeconfig, "serve", "running", "--kind", "kserve")
    assert code == 1
    assert "has a model to serve once it Succeeded" in err
    assert "--dry-run" in err
    code, out, _ = await _kubetune(kubeconfig, "serve", "running", "--kind", "kserve", "--dry-run")
    assert code == 0
    assert [m["kind"] for m in yaml.safe_load_all(out)] == ["InferenceService"]

    code, _, err = await _kubetune(kubeconfig, "serve", "missing", "--kind", "vllm")
    assert code == 1
    assert "FineTuneJob missing not found" in err
    assert cluster.live(DEPLOYMENTS, NAMESPACE, "early") is None
    assert cluster.live(DEPLOYMENTS, NAMESPACE, "running") is None
