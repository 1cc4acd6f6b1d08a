"""Peak memory of LoRA against full fine-tuning, on the CPU, through `kubetune run --local`.

    .venv/bin/python bench/lora_memory.py [--examples 64] [--batch-size 16] [--epochs 1] [--rounds 1]

One random Llama of 14.7M parameters (hidden 512, intermediate 1024, 6 layers, 8 heads, 4 KV
heads, vocab 512, untied) trains on chat examples of 40-400 words (loss on the assistant turn),
once fully and once with LoRA at the template's defaults (r 64, alpha 128, all-linear, merged
on save). Each run is its own `python -m kubetune_operator.cli run JOB.yaml --local` process,
so its peak RSS (getrusage of that child) is its own; the parent imports no ML stack. The
stage whose peak is the run's peak is found by sampling the child's RSS every 20 ms and the
stage lines it prints. Prints a table and LoRA's peak as a ratio of full fine-tuning's.
"""

# The parent imports no ML stack; the model is written by a child process too.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
REPO = "bench-org/llama-14m"
SHAPE = {
    "hidden_size": 512,
    "intermediate_size": 1024,
    "num_hidden_layers": 6,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "vocab_size": 512,
}


@dataclass
class Run:
    name: str
    peak_rss_mb: float
    wall_seconds: float
    exit_code: int
    peak_stage: str
    stage_peaks_mb: dict[str, float] = field(default_factory=dict)


def environment(hf_home: Path) -> dict[str, str]:
    paths = [str(ROOT / "operator"), str(ROOT / "trainer_image")]
    if (ROOT / "sandbox").is_dir():
        paths.append(str(ROOT / "sandbox"))
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]),
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }


def write_model(hf_home: Path, env: dict[str, str]) -> None:
    code = (
        "from pathlib import Path; from kubetune_trainer.tiny_model import TinyShape, write_tiny_model; "
        f"write_tiny_model(arch='llama', repo_id={REPO!r}, hf_home=Path({str(hf_home)!r}), "
        f"shape=TinyShape(**{SHAPE!r}))"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def write_data(path: Path, *, examples: int, seed: int = 3) -> None:
    import random

    sys.path.insert(0, str(ROOT / "trainer_image"))
    from kubetune_trainer.tiny_model import markov_sentences  # no torch needed: the chain is plain python

    rng = random.Random(seed)
    lines = []
    for index in range(examples):
        words: list[str] = []
        target = rng.randint(40, 400)
        sentences = markov_sentences(80, seed=seed * 1000 + index)
        while len(words) < target:
            words.extend(sentences.pop().split())
        words = words[:target]
        half = max(1, len(words) // 3)
        lines.append(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": " ".join(words[:half])},
                        {"role": "assistant", "content": " ".join(words[half:])},
                    ]
                }
            )
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_job(path: Path, *, name: str, data: Path, lora: bool, batch_size: int, epochs: int) -> None:
    spec: dict[str, object] = {
        "model": "auto",
        "fromHfModel": REPO,
        "trainingFile": str(data),
        "hyperparameters": {"nEpochs": epochs, "batchSize": batch_size, "learningRate": 1e-4, "nEvals": 0},
        "lora": {"enabled": lora},
        "suffix": name,
        "output": {"uri": f"pvc://models/{name}"},
    }
    manifest = {"apiVersion": "kubetune.dev/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": name}, "spec": spec}
    path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_job(job: Path, *, workdir: Path, env: dict[str, str], name: str) -> Run:
    command = [sys.executable, "-m", "kubetune_operator.cli", "run", str(job), "--local", "--workdir", str(workdir)]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    stage = ["start"]
    peaks: dict[str, float] = {}

    def sample() -> None:
        while process.poll() is None:
            rss = _rss_mb(process.pid)
            peaks[stage[0]] = max(peaks.get(stage[0], 0.0), rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tail: list[str] = []
    assert process.stderr is not None
    for line in process.stderr:
        tail = [*tail[-30:], line]
        if line.startswith("==> "):
            stage[0] = line.split()[1]
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        print("".join(tail), file=sys.stderr)
    peak_stage = max(peaks, key=lambda s: peaks[s]) if peaks else "?"
    return Run(name, usage.ru_maxrss / 1024, wall, process.returncode, peak_stage, peaks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="runs of each, interleaved; the lowest peak counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubetune-lora-memory-") as scratch:
        root = Path(scratch)
        env = environment(root / "hf")
        write_model(root / "hf", env)
        data = root / "train.jsonl"
        write_data(data, examples=args.examples)
        runs: dict[str, list[Run]] = {"full": [], "lora": []}
        for round_index in range(args.rounds):
            for name, found in runs.items():
                job = root / f"{name}.yaml"
                write_job(
                    job, name=name, data=data, lora=name == "lora", batch_size=args.batch_size, epochs=args.epochs
                )
                result = run_job(job, workdir=root / f"work-{name}-{round_index}", env=env, name=name)
                if result.exit_code != 0:
                    print(f"{name} failed with exit code {result.exit_code}", file=sys.stderr)
                    return 1
                found.append(result)
        best = {name: min(found, key=lambda r: r.peak_rss_mb) for name, found in runs.items()}
        print(f"{'run':<6} {'peak RSS MB':>12} {'wall s':>8}  peak stage  (sampled peak per stage, MB)")
        for run in best.values():
            stages = ", ".join(f"{stage} {mb:.0f}" for stage, mb in run.stage_peaks_mb.items())
            print(f"{run.name:<6} {run.peak_rss_mb:>12.0f} {run.wall_seconds:>8.1f}  {run.peak_stage:<10}  ({stages})")
        ratio = best["lora"].peak_rss_mb / best["full"].peak_rss_mb
        print(f"LoRA / full peak RSS: {ratio:.2f} (goal <= 0.80)")
        print(f"self RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
