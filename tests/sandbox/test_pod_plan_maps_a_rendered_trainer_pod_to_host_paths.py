"""A trainer pod the operator renders, planned as a host process: every mount, path, variable and file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune_operator.render.configmap import CONFIG_DIR, CONFIG_KEY
from kubetune_sandbox.layout import SandboxLayout
from kubetune_sandbox.pod_plan import ProcessPlan

from .rendered_pods import API_TOKEN, HF_TOKEN, INTERPRETER, SINGLE_NODE, plan, pod_of, rendered

LAYOUT = SandboxLayout(Path("/sandbox"), hf_home=Path("/host/hf"), cache_claim="hf-cache")
POD_DIR = Path("/sandbox/pods/ml/support-bot-a1-0-x7k2p")
CLAIMS = Path("/sandbox/volumes/pvc")


def _trainer_plan() -> tuple[ProcessPlan, dict[str, dict[str, Any]]]:
    objects = rendered(SINGLE_NODE)
    return plan(pod_of(objects["Job"], index=0), objects, layout=LAYOUT), objects


def test_the_command_reads_the_config_file_where_the_configmap_is_written() -> None:
    trainer, _ = _trainer_plan()
    config = POD_DIR / "volumes" / "config" / CONFIG_KEY
    assert trainer.argv == (
        # LoRA on llama-2-7b-chat: the GPU planner holds one of the template's eight GPUs.
        "torchrun", "--nnodes", "1", "--nproc-per-node", "1", "--shutdown-timeout", "30", "--standalone",
        "-m", "kubetune_trainer", "--config", str(config),
    )  # fmt: skip
    assert f"{CONFIG_DIR}/{CONFIG_KEY}" not in " ".join(trainer.argv)
    assert trainer.env["PATH"].startswith(f"{INTERPRETER.parent}:")  # torchrun is the sandbox's own
    assert config in trainer.files


def test_the_trainer_config_names_host_paths_and_keeps_everything_else() -> None:
    trainer, objects = _trainer_plan()
    written = json.loads(trainer.files[POD_DIR / "volumes" / "config" / CONFIG_KEY])
    original = json.loads(objects["ConfigMap"]["data"][CONFIG_KEY])
    assert written["data"]["pvcMountRoot"] == str(CLAIMS)
    assert written["runtime"]["cacheDir"] == str(CLAIMS / "hf-cache" / "hf")
    assert written["runtime"]["workDir"] == str(POD_DIR / "volumes" / "work")
    assert written["terminationLogPath"] == str(POD_DIR / "termination-log")
    assert trainer.termination_log == POD_DIR / "termination-log"
    # URIs, names and numbers are not paths: untouched.
    for rewritten in (("data", "pvcMountRoot"), ("runtime", "cacheDir"), ("runtime", "workDir")):
        original[rewritten[0]][rewritten[1]] = written[rewritten[0]][rewritten[1]]
    original["terminationLogPath"] = written["terminationLogPath"]
    assert written == original


def test_volumes_become_host_directories() -> None:
    trainer, _ = _trainer_plan()
    assert trainer.env["HF_HOME"] == str(CLAIMS / "hf-cache" / "hf")
    assert trainer.env["HOME"] == str(POD_DIR / "volumes" / "tmp")
    for claim in ("checkpoints", "datasets", "models", "hf-cache"):
        assert CLAIMS / claim in trainer.directories
    assert POD_DIR / "volumes" / "work" in trainer.directories
    assert Path("/dev/shm") not in trainer.directories  # the host's shared memory, not created
    assert trainer.log_file == POD_DIR / "container.log"
    assert trainer.grace_seconds == 55


def test_env_holds_the_secret_the_index_and_the_way_to_the_api() -> None:
    trainer, _ = _trainer_plan()
    account = POD_DIR / "serviceaccount"
    assert trainer.env["HF_TOKEN"] == HF_TOKEN
    assert trainer.env["JOB_COMPLETION_INDEX"] == "0"
    assert trainer.env["HOSTNAME"] == "support-bot-a1-0"
    assert trainer.env["PYTHONUNBUFFERED"] == "1"
    assert trainer.env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert trainer.env["KUBERNETES_SERVICE_PORT"] == "6443"
    assert trainer.env["KUBETUNE_SERVICE_ACCOUNT_DIR"] == str(account)
    assert trainer.files[account / "token"] == API_TOKEN.encode()
    assert trainer.files[account / "namespace"] == b"ml"
    assert trainer.files[account / "ca.crt"].startswith(b"-----BEGIN CERTIFICATE-----")


def test_no_secret_shows_in_the_plans_repr() -> None:
    trainer, _ = _trainer_plan()
    assert HF_TOKEN not in repr(trainer)
    assert API_TOKEN not in repr(trainer)


def test_the_preflight_runs_the_sandbox_interpreter_without_an_api_token() -> None:
    objects = rendered(SINGLE_NODE, preflight=True)
    preflight = plan(pod_of(objects["Job"], index=None), objects, layout=LAYOUT)
    pod_dir = Path("/sandbox/pods/ml/support-bot-preflight-x7k2p")
    assert preflight.argv == (
        str(INTERPRETER), "-m", "kubetune_trainer", "preflight", "--config", str(pod_dir / "volumes/config/config.json")
    )  # fmt: skip
    assert "KUBETUNE_SERVICE_ACCOUNT_DIR" not in preflight.env
    assert not any(path.is_relative_to(pod_dir / "serviceaccount") for path in preflight.files)
    assert "JOB_COMPLETION_INDEX" not in preflight.env
    assert preflight.env["HF_TOKEN"] == HF_TOKEN
