"""`kubetune jobs` against the sandbox, as a kubectl user runs it: create, get -w, list, events, logs,
checkpoints, download, cancel; and the refusals (a finished job cancelled, a step that does not
exist, a job that does not exist) that exit 1, name the job and what to do, and change nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from .models import TINY_LLAMA, E2eModels, put_data
from .sandboxes import Running, e2e_sandbox
from .test_e2e_jobs_succeed import load_and_generate

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass(frozen=True)
class Cli:
    env: dict[str, str]
    data: str

    async def __call__(self, *args: str, timeout: float = 300) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kubetune_operator.cli",
            "jobs",
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def ok(self, *args: str, timeout: float = 300) -> str:
        code, out, err = await self(*args, timeout=timeout)
        assert code == 0, f"kubetune jobs {' '.join(args)}: exit {code}\n{out}\n{err}"
        return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory, e2e_models: E2eModels) -> AsyncIterator[Running]:
    async with e2e_sandbox(tmp_path_factory.mktemp("sandbox"), e2e_models) as running:
        yield running


@pytest.fixture
def cli(running: Running, e2e_models: E2eModels) -> Cli:
    data = put_data(running.volume("datasets"), claim="datasets", source=e2e_models.train, as_name="train.jsonl")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KUBE")},
        "PYTHONPATH": os.pathsep.join(sys.path),
        "KUBECONFIG": str(running.sandbox.kubeconfig),
        "KUBETUNE_PVC_ROOT": str(running.sandbox.volume("datasets").parent),
        "HF_HOME": str(e2e_models.hf_home),
        "HF_HUB_OFFLINE": "1",
    }
    return Cli(env=env, data=data)


def create_flags(cli: Cli, name: str, *extra: str) -> list[str]:
    return [
        "create",
        "--name",
        name,
        "--model",
        "auto",
        "--from-hf-model",
        TINY_LLAMA,
        "--training-file",
        cli.data,
        "--batch-size",
        "8",
        "--learning-rate",
        "3e-3",
        "--seed",
        "7",
        "--max-retries",
        "0",
        *extra,
    ]


async def test_create_follow_list_and_download_a_job(cli: Cli, tmp_path: Path) -> None:
    created = await cli.ok(
        *create_flags(
            cli,
            "cli-full",
            "--n-epochs",
            "1",
            "--no-lora",
            "--output-uri",
            "pvc://models/cli-full",
            "--checkpoint-uri",
            "pvc://checkpoints",
            "--n-checkpoints",
            "2",
        )
    )
    assert created.strip() == "finetunejob.kubetune.dev/cli-full"

    followed = await cli.ok("get", "cli-full", "-w", timeout=240)
    lines = followed.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "STAGE", "PROGRESS", "MODEL", "ERROR", "AGE"]
    assert lines[-1].split()[:5] == ["cli-full", "Succeeded", "Upload", "100%", "(4/4)"], followed
    assert len(lines) > 2, "get -w printed the job's changes, not only its first state"

    table = (await cli.ok("list")).splitlines()
    assert table[0].split()[:3] == ["NAME", "PHASE", "STAGE"]
    assert any(row.split()[:2] == ["cli-full", "Succeeded"] for row in table[1:])
    as_json = json.loads(await cli.ok("list", "-o", "json"))
    assert as_json["kind"] == "List"
    assert "cli-full" in [item["metadata"]["name"] for item in as_json["items"]]
    as_yaml = yaml.safe_load(await cli.ok("get", "cli-full", "-o", "yaml"))
    assert as_yaml["status"]["phase"] == "Succeeded"
    wide = (await cli.ok("get", "cli-full", "-o", "wide")).splitlines()
    assert wide[0].split()[-4:] == ["STATUS", "HF-MODEL", "REASON", "ATTEMPT"]
    assert wide[1].split()[-3:] == ["completed", TINY_LLAMA, "1"]

    events = await cli.ok("events", "cli-full")
    assert events.splitlines()[0].split() == ["TIME", "TYPE", "REASON", "COUNT", "MESSAGE"]
    assert "stage Training started" in events
    assert "Completed" in events
    logs = await cli.ok("logs", "cli-full")
    assert logs.strip(), "rank 0's log is empty"

    checkpoints = json.loads(await cli.ok("checkpoints", "cli-full", "-o", "json"))
    assert [c["type"] for c in checkpoints if c["step"] is None] == ["Final"]
    # Each checkpoint the trainer completed, reported by rank 0 and listed by the operator, newest first.
    steps = [c for c in checkpoints if c["step"] is not None]
    assert [c["step"] for c in steps] == [4, 2], checkpoints
    assert [c["epoch"] for c in steps] == [1.0, 0.5]
    assert all(c["train_loss"] is not None and c["location"] for c in steps), steps
    assert "CheckpointSaved" in events
    assert "EpochCompleted" in events

    target = tmp_path / "model"
    said = await cli.ok("download", "cli-full", "--output", str(target))
    assert str(target) in said
    prompt, generated = await asyncio.to_thread(load_and_generate, target)
    assert generated > prompt


async def test_refusals_name_the_job_and_change_nothing(running: Running, cli: Cli, tmp_path: Path) -> None:
    await running.view.wait_for_phase("cli-full", "Succeeded", "Failed", timeout=240)
    before = await running.view.job("cli-full")

    code, _, err = await cli("cancel", "cli-full")
    assert code == 1
    assert "cli-full already finished (Succeeded)" in err
    assert "fromCheckpoint" in err

    code, _, err = await cli("download", "cli-full", "--checkpoint-step", "999", "--output", str(tmp_path / "x"))
    assert code == 1
    assert "cli-full has no checkpoint at step 999" in err
    assert not (tmp_path / "x").exists()

    code, _, err = await cli("get", "no-such-job")
    assert code == 1
    assert "no-such-job not found in namespace default" in err

    code, _, err = await cli("create", "--model", "auto", "--training-file", cli.data, "--learning-rate", "7")
    assert code == 1
    assert "learningRate" in err

    after = await running.view.job("cli-full")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def test_cancel_ends_the_job_cancelled_with_its_record_and_no_pod(
    running: Running, cli: Cli, e2e_models: E2eModels, tmp_path: Path
) -> None:
    # 20 epochs (the template's most) of 20 copies of the data: 1600 steps, far longer than the test waits.
    many = tmp_path / "many.jsonl"
    many.write_text(e2e_models.train.read_text() * 20)
    data = put_data(running.volume("datasets"), claim="datasets", source=many, as_name="many.jsonl")
    flags = create_flags(
        cli, "cli-long", "--n-epochs", "20", "--lora", "--lora-r", "8", "--checkpoint-uri", "pvc://checkpoints"
    )
    flags[flags.index(cli.data)] = data
    await cli.ok(*flags)
    await running.view.wait_until(
        "cli-long", lambda s: (s.get("progress") or {}).get("step", 0) >= 2, timeout=240, what="training past step 2"
    )

    said = await cli.ok("cancel", "cli-long")
    assert said.strip() == "finetunejob.kubetune.dev/cli-long cancel requested (cancel_requested)"
    status = await running.view.wait_for_phase("cli-long", "Cancelled", "Failed", "Succeeded", timeout=120)
    assert status["phase"] == "Cancelled", (status.get("error"), status.get("stages"))
    assert status["completionTime"]
    assert status["resolved"]["lora"]["r"] == 8, "the record is kept"
    assert status["progress"]["step"] >= 2
    for _ in range(100):
        if not [p for p in await running.view.pods("cli-long") if p["status"].get("phase") == "Running"]:
            break
        await asyncio.sleep(0.3)
    assert [p for p in await running.view.pods("cli-long") if p["status"].get("phase") == "Running"] == []
    # The trainer checkpoints on SIGTERM and reports it; the operator lists it though the job is Cancelled.
    listed = await running.view.wait_until(
        "cli-long", lambda s: bool(s.get("checkpoints")), timeout=60, what="the SIGTERM checkpoint in status"
    )
    assert listed["phase"] == "Cancelled"
    assert listed["checkpoints"][-1]["step"] >= status["progress"]["step"]
    steps = (await cli.ok("checkpoints", "cli-long")).splitlines()[1].split()
    assert steps[0] == f"cli-long:{listed['checkpoints'][-1]['step']}", "the CLI lists it"
    wide = (await cli.ok("get", "cli-long", "-o", "wide")).splitlines()[1].split()
    assert wide[1] == "Cancelled"
    assert "cancelled" in wide
    events = await cli.ok("events", "cli-long")
    assert "spec.cancel is true: pods removed, GPUs released" in events

    code, _, err = await cli("cancel", "cli-long")
    assert code == 1
    assert "cli-long already finished (Cancelled)" in err
