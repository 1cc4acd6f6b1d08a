"""Serving hand-off, end to end: a LoRA job trained by the real trainer in the sandbox is handed to vLLM.

The operator creates the Deployment and Service on success (the sandbox runs no Deployment controller, so
no server starts); what this proves is that the server is pointed at what the trainer really wrote: the
`--lora-modules` path, mapped from the pod to the sandbox's claim, is an adapter that peft loads over the
base model `vllm serve` is given, at the commit trained; and `kubetune jobs serve --dry-run` prints it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from kubetune_operator.kube import ApiResource

from .models import TINY_LLAMA, E2eModels, finetunejob, put_data, tiny_spec
from .sandboxes import Running, e2e_sandbox

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEPLOYMENTS = ApiResource("apps", "v1", "deployments", "Deployment")
SERVICES = ApiResource("", "v1", "services", "Service")
PVC_ROOT = "/mnt/pvc/"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory, e2e_models: E2eModels) -> AsyncIterator[Running]:
    async with e2e_sandbox(tmp_path_factory.mktemp("sandbox"), e2e_models) as running:
        data = put_data(running.volume("datasets"), claim="datasets", source=e2e_models.train, as_name="train.jsonl")
        lora = {"enabled": True, "r": 8, "alpha": 16, "merge": False}
        spec = tiny_spec(data, lora=lora, output={"uri": "pvc://models/adapter"}, serve={"kind": "vllm"})
        await running.view.create(finetunejob("adapter", spec))
        yield running


def _adapter_generates(base: Path, adapter: Path) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kubetune_trainer.peft_models import load_adapter

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = load_adapter(AutoModelForCausalLM.from_pretrained(base), adapter)
    prompt: Any = tokenizer("the quick", return_tensors="pt")
    generated: Any = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    return int(generated.shape[1] - prompt["input_ids"].shape[1])


async def test_the_vllm_server_is_pointed_at_the_adapter_the_trainer_wrote(
    running: Running, e2e_models: E2eModels
) -> None:
    view = running.view
    status = await view.wait_for_phase("adapter", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status.get("error")
    status = await view.wait_until(
        "adapter", lambda s: (s.get("serving") or {}).get("state") == "Created", timeout=60, what="serving Created"
    )
    serving = status["serving"]
    assert serving["url"] == "http://adapter.default.svc.cluster.local:8000/v1"
    deployment = await view.client.get(DEPLOYMENTS, namespace="default", name="adapter")
    assert deployment is not None
    assert await view.client.get(SERVICES, namespace="default", name="adapter") is not None

    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    sha = status["resolved"]["revisionSha"]
    assert args[0] == TINY_LLAMA
    assert f"--revision={sha}" in args
    assert "--max-lora-rank=8" in args
    (modules,) = [a.removeprefix("--lora-modules=") for a in args if a.startswith("--lora-modules=")]
    name, _, in_pod = modules.partition("=")
    assert name == serving["model"] == status["outputModel"]["name"]
    claim, _, path = in_pod.removeprefix(PVC_ROOT).partition("/")
    on_host = running.volume(claim) / path
    assert (on_host / "adapter_config.json").is_file()
    base = e2e_models.hf_home / "hub" / f"models--{TINY_LLAMA.replace('/', '--')}" / "snapshots" / sha
    assert await asyncio.to_thread(_adapter_generates, base, on_host) == 3

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kubetune_operator.cli",
        "jobs",
        "serve",
        "adapter",
        "--dry-run",
        "--kubeconfig",
        str(running.sandbox.kubeconfig),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    printed, _ = yaml.safe_load_all(out.decode())
    assert printed["spec"] == deployment["spec"], "--dry-run prints what the operator created"
