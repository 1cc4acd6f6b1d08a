"""Jobs that succeed, end to end: `kubectl apply` to a saved model through the real operator and trainer.

One sandbox for the module; the three jobs are submitted together (they do not interfere) and
each test follows its own, as a user would: `kubectl get ftj`, `kubectl describe ftj`, the
Events, the pods, and the output folder loaded with AutoModelForCausalLM.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from kubetune_operator.render.labels import PREFLIGHT, TRAINER
from kubetune_trainer.contract import Stage

from ..conftest import CATALOG_DIR
from .host_processes import processes_under
from .models import E2eModels, finetunejob, put_data, tiny_spec
from .sandboxes import Running, e2e_sandbox
from .user_view import reasons, stage_names

pytestmark = pytest.mark.asyncio(loop_scope="module")

STAGES = [stage.value for stage in Stage]
TWO_NODE_TEMPLATE = "tiny-two-node"


def two_node_template() -> dict[str, Any]:
    """The catalog's Llama 3.2 1B template, as a cluster admin would copy it, on 2 nodes of 1 GPU."""
    template = yaml.safe_load((CATALOG_DIR / "llama-3.2-1b-instruct.yaml").read_text(encoding="utf-8"))
    template["metadata"] = {"name": TWO_NODE_TEMPLATE}
    template["spec"]["aliases"] = []
    template["spec"]["resources"].update(nodes=2, gpusPerNode=1)
    return template


@dataclass
class ProcessWatch:
    """What `ps` shows for the two-node job's pods while they run: pod name -> its processes' command lines."""

    seen: dict[str, list[list[bytes]]] = field(default_factory=dict)

    async def record(self, running: Running, *, job: str) -> None:
        """Every 0.2 s; per pod, the fullest view seen (the agent starts its worker once torch is imported)."""
        while True:
            for record in running.sandbox.runner.live_processes():
                if not record.pod.startswith(f"{job}-a1-"):
                    continue
                with contextlib.suppress(OSError):  # a process may end between the listing and the read
                    now = [
                        (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
                        for pid in processes_under(running.sandbox.layout.pod_dir("default", record.pod))
                    ]
                    if len(now) > len(self.seen.get(record.pod, [])):
                        self.seen[record.pod] = now
            await asyncio.sleep(0.2)


TWO_NODE_PROCESSES = ProcessWatch()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory, e2e_models: E2eModels) -> AsyncIterator[Running]:
    async with e2e_sandbox(tmp_path_factory.mktemp("sandbox"), e2e_models) as running:
        data = put_data(running.volume("datasets"), claim="datasets", source=e2e_models.train, as_name="train.jsonl")
        await running.view.create(two_node_template())
        await running.view.create(finetunejob("single", tiny_spec(data, output={"uri": "pvc://models/single"})))
        lora = {"enabled": True, "r": 8, "alpha": 16, "merge": True}
        await running.view.create(finetunejob("lora", tiny_spec(data, lora=lora, output={"uri": "pvc://models/lora"})))
        two_nodes = tiny_spec(data, model=TWO_NODE_TEMPLATE, output={"uri": "pvc://models/two-nodes"}, gpus=2)
        await running.view.create(finetunejob("two-nodes", two_nodes))
        watching = asyncio.create_task(TWO_NODE_PROCESSES.record(running, job="two-nodes"))
        yield running
        watching.cancel()


def load_and_generate(model_dir: Path) -> tuple[int, int]:
    """(prompt tokens, tokens after generation): the model a user downloads loads and writes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompt: Any = tokenizer.apply_chat_template(
        [{"role": "user", "content": "the quick"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    generated: Any = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    return int(prompt["input_ids"].shape[1]), int(generated.shape[1])


async def test_single_node_job_succeeds_with_every_stage_in_order(running: Running) -> None:
    view = running.view
    status = await view.wait_for_phase("single", "Succeeded", "Failed")

    assert status["phase"] == "Succeeded", status.get("error")
    assert stage_names(status) == STAGES
    assert all(record["state"] == "Succeeded" for record in status["stages"]), status["stages"]
    assert status["attempt"] == 1
    assert status["progress"]["step"] == status["progress"]["totalSteps"] == 4
    assert status["resolved"]["template"] == "llama-3.2-1b-instruct"

    events = await view.events("single", until="Completed")
    started = [e.message.split(";")[0] for e in events if e.reason == "StageStarted"]
    assert started == [f"stage {stage} started" for stage in STAGES]
    happened = reasons(events)
    assert happened.index("PreflightPassed") < happened.index("AttemptCreated") < happened.index("StageStarted")
    last_stage = len(happened) - 1 - happened[::-1].index("StageStarted")
    assert happened.index("Completed") > last_stage  # the warnings the trainer found may follow it

    table = await view.kubectl("get", "ftj", "single")
    assert table.splitlines()[0].split() == ["NAME", "PHASE", "STAGE", "PROGRESS", "MODEL", "ERROR", "AGE"]
    assert table.splitlines()[1].split()[:5] == ["single", "Succeeded", "Upload", "100%", "(4/4)"]
    described = await view.kubectl("describe", "ftj", "single")
    assert "Completed" in described
    assert "stage Training started" in described

    preflight = await view.pods("single", component=PREFLIGHT)
    trainers = await view.pods("single", component=TRAINER)
    assert [p["status"]["phase"] for p in preflight] == ["Succeeded"]
    assert [p["status"]["phase"] for p in trainers] == ["Succeeded"]

    model_dir = running.volume("models") / "single"
    assert status["outputModel"]["uri"] == "pvc://models/single"
    prompt, generated = await asyncio.to_thread(load_and_generate, model_dir)
    assert generated > prompt


async def test_lora_job_saves_a_merged_model(running: Running) -> None:
    status = await running.view.wait_for_phase("lora", "Succeeded", "Failed")

    assert status["phase"] == "Succeeded", status.get("error")
    assert status["resolved"]["lora"]["r"] == 8
    model_dir = running.volume("models") / "lora"
    files = {path.name for path in model_dir.iterdir()}
    assert "model.safetensors" in files
    assert "adapter_config.json" not in files  # merged: a plain model, no PEFT needed to load it
    prompt, generated = await asyncio.to_thread(load_and_generate, model_dir)
    assert generated > prompt


async def test_two_node_job_runs_one_torchrun_per_pod_and_succeeds(running: Running) -> None:
    view = running.view
    await view.wait_until(
        "two-nodes", lambda s: s.get("phase") in ("Running", "Succeeded", "Failed"), timeout=180, what="Running"
    )
    pods = await view.pods("two-nodes", component=TRAINER)
    assert len(pods) == 2
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        command = [*container.get("command", []), *container.get("args", [])]
        assert command[:5] == ["torchrun", "--nnodes", "2", "--nproc-per-node", "1"], command
        assert "--rdzv-backend" in command
        assert "c10d" in command

    status = await view.wait_for_phase("two-nodes", "Succeeded", "Failed")

    assert status["phase"] == "Succeeded", status.get("error")
    assert status["resolved"]["nodes"] == 2
    finished = await view.pods("two-nodes", component=TRAINER)
    indexes = sorted(p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] for p in finished)
    assert indexes == ["0", "1"]
    assert [p["status"]["phase"] for p in finished] == ["Succeeded", "Succeeded"]
    assert (running.volume("models") / "two-nodes" / "model.safetensors").exists()
    # While they ran, each pod held one torchrun agent and its one trainer worker (ps, by command line),
    # and both agents met at one c10d endpoint on loopback (the Service address rewritten by the sandbox).
    assert sorted(TWO_NODE_PROCESSES.seen) == sorted(p["metadata"]["name"] for p in finished)
    endpoints = set()
    for pod, command_lines in TWO_NODE_PROCESSES.seen.items():
        agents = [argv for argv in command_lines if any(arg.endswith(b"torchrun") for arg in argv)]
        workers = [argv for argv in command_lines if b"kubetune_trainer" in argv and argv not in agents]
        assert (len(agents), len(workers)) == (1, 1), (pod, command_lines)
        (agent,) = agents
        assert agent[agent.index(b"--rdzv-backend") + 1] == b"c10d", agent
        endpoints.add(agent[agent.index(b"--rdzv-endpoint") + 1].decode())
    (endpoint,) = endpoints
    assert endpoint.startswith("127.0.0.1:"), endpoint
