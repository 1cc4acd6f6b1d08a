"""Peak memory of LoRA against full fine-tuning, on the CPU, through `kubetune run --local`.

    .venv/bin/python bench/lora_memory.py [--examples 64] [--batch-size 16] [--epochs 1] [--rounds 1]

One random Llama of 14.7M parameters (hidden 512, intermediate 1024, 6 layers, 8 heads, 4 KV
heads, vocab 512, untied) trains on chat examples of 40-400 words (loss on the assistant turn),
once fully and once with LoRA at the template's defaults (r 64, alpha 128, all-linear, merged
on save). Each run is its own `python -m kubetune_operator.cli run JOB.yaml --local` process,
so its peak RSS (getrusage of that child) is its own; the parent imports no ML stack. The
stage whose peak is the run's peak is found by sampling the child's RSS every 20 ms and the
stage lines it prints. Prints a table (with each child's user and system CPU seconds: an allocator
setting such as MALLOC_MMAP_THRESHOLD_, inherited by the children, shows its cost in the system
column) and LoRA's peak as a ratio of full fine-tuning's.
"""

# The parent imports no ML stack; the model is written by a child process (synthetic.publish_tiny_llama).

from __future__ import annotations

import argparse
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
from synthetic import offline_environment, publish_tiny_llama, word_chats, write_jsonl

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
    user_seconds: float
    system_seconds: float
    stage_peaks_mb: dict[str, float] = field(default_factory=dict)


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
    return Run(
        name, usage.ru_maxrss / 1024, wall, process.returncode, peak_stage, usage.ru_utime, usage.ru_stime, peaks
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="runs of each, interleaved; the lowest peak counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubetune-lora-memory-") as scratch:
        root = Path(scratch)
        env = offline_environment(root / "hf")
        publish_tiny_llama(root / "hf", repo_id=REPO, shape=SHAPE)
        data = root / "train.jsonl"
        write_jsonl(data, word_chats(args.examples))
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
        print(
            f"{'run':<6} {'peak RSS MB':>12} {'wall s':>8} {'user s':>7} {'sys s':>6}  "
            "peak stage  (sampled peak per stage, MB)"
        )
        for run in best.values():
            stages = ", ".join(f"{stage} {mb:.0f}" for stage, mb in run.stage_peaks_mb.items())
            print(
                f"{run.name:<6} {run.peak_rss_mb:>12.0f} {run.wall_seconds:>8.1f} {run.user_seconds:>7.1f} "
                f"{run.system_seconds:>6.1f}  {run.peak_stage:<10}  ({stages})"
            )
        ratio = best["lora"].peak_rss_mb / best["full"].peak_rss_mb
        print(f"LoRA / full peak RSS: {ratio:.2f} (goal <= 0.80)")
        print(f"self RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
