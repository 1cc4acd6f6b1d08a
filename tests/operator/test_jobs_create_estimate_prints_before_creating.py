"""`kubetune jobs create --estimate`: the GPU-hour estimate against the cluster's templates, printed before the
job is created; `--dry-run` creates nothing; no estimate (a template that is not installed, one that declares
no throughput) is a clear refusal naming the job and what to do, exit 1, and nothing created."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from kubetune_sandbox.emulator import ApiEmulator

from ..conftest import load_yaml
from .cluster_actors import NAMESPACE
from .conftest import FTJ

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
THROUGHPUT = 5000.0  # examples/custom-template.yaml's expectedTokensPerSecondPerGpu
TEXT = "The quick brown fox jumps over the lazy dog. " * 8


def _kubeconfig(cluster: ApiEmulator, path: Path) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": str(cluster.url).rstrip("/")}}],
        "users": [{"name": "user", "user": {"token": "not-checked"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "user", "namespace": NAMESPACE}}],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def _jobs(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a process, off the event loop (the emulator answers from it)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    environ.update(KUBECONFIG=str(kubeconfig), PYTHONPATH=os.pathsep.join(sys.path), HF_HUB_OFFLINE="1")
    environ["HF_HOME"] = str(kubeconfig.parent / "empty-hf-home")  # no cached tokenizer: the 4-characters rule
    command = [sys.executable, "-m", "kubetune_operator.cli", "jobs", "create", *args]
    return await asyncio.to_thread(
        subprocess.run, command, env=environ, capture_output=True, text=True, timeout=120, check=False
    )


def _data(tmp_path: Path, rows: int = 50) -> Path:
    path = tmp_path / "train.jsonl"
    line = {"messages": [{"role": "user", "content": TEXT}, {"role": "assistant", "content": TEXT}]}
    path.write_text("".join(json.dumps(line) + "\n" for _ in range(rows)), encoding="utf-8")
    return path


async def _install_custom_template(cluster: ApiEmulator) -> dict[str, Any]:
    template = load_yaml(EXAMPLES / "custom-template.yaml")
    async with cluster.post("/apis/kubetune.dev/v1alpha1/basemodeltemplates", json=template) as made:
        assert made.status in {200, 201}, await made.text()
    return template


async def test_the_estimate_is_printed_before_the_job_is_created(cluster: ApiEmulator, tmp_path: Path) -> None:
    await _install_custom_template(cluster)
    kubeconfig, data = _kubeconfig(cluster, tmp_path / "kubeconfig"), _data(tmp_path)
    flags = ["--model", "smollm2-on-l4", "--training-file", "pvc://datasets/train.jsonl", "--n-epochs", "2"]

    dry = await _jobs(kubeconfig, "--name", "sized", *flags, "--estimate", "--estimate-data", str(data), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    tokens = 50 * 2 * -(-len(TEXT) // 4) + 50 * 2 * 2  # every string: contents and roles, 4 characters a token
    hours = tokens * 2 / THROUGHPUT / 3600
    assert "job sized on template smollm2-on-l4" in dry.stdout
    assert f"{tokens} per epoch x 2 epochs" in dry.stdout
    assert f"{hours:.3g} GPU-hours" in dry.stdout
    printed = yaml.safe_load(dry.stdout[dry.stdout.index("apiVersion") :])
    assert printed["metadata"]["name"] == "sized"
    assert cluster.live(FTJ, NAMESPACE, "sized") is None, "--dry-run creates nothing"

    made = await _jobs(kubeconfig, "--name", "sized", *flags, "--estimate", "--estimate-data", str(data))
    assert made.returncode == 0, made.stderr
    assert made.stdout.index("GPU-hours") < made.stdout.index("finetunejob.kubetune.dev/sized"), "estimate first"
    assert cluster.live(FTJ, NAMESPACE, "sized") is not None


async def test_no_estimate_means_no_job_and_says_what_to_do(cluster: ApiEmulator, tmp_path: Path) -> None:
    kubeconfig, data = _kubeconfig(cluster, tmp_path / "kubeconfig"), _data(tmp_path)

    unknown = await _jobs(
        kubeconfig, "--name", "lost", "--model", "no-such-template", "--training-file", "pvc://d/t.jsonl",
        "--estimate", "--estimate-data", str(data),
    )  # fmt: skip
    assert unknown.returncode == 1
    assert "job lost: no estimate" in unknown.stderr
    assert "no-such-template" in unknown.stderr
    assert "nothing was created" in unknown.stderr
    assert cluster.live(FTJ, NAMESPACE, "lost") is None

    undeclared = await _jobs(
        kubeconfig, "--name", "unsized", "--model", "meta-llama/Llama-3.2-1B-Instruct",
        "--training-file", "pvc://d/t.jsonl", "--estimate", "--estimate-data", str(data),
    )  # fmt: skip
    assert undeclared.returncode == 1
    assert "job unsized: no estimate" in undeclared.stderr
    assert "expectedTokensPerSecondPerGpu" in undeclared.stderr, "what to set"
    assert cluster.live(FTJ, NAMESPACE, "unsized") is None

    remote = await _jobs(
        kubeconfig, "--name", "remote", "--model", "meta-llama/Llama-3.2-1B-Instruct",
        "--training-file", "s3://bucket/t.jsonl", "--estimate",
    )  # fmt: skip
    assert remote.returncode == 1
    assert "--estimate-data FILE" in remote.stderr
    assert cluster.live(FTJ, NAMESPACE, "remote") is None
