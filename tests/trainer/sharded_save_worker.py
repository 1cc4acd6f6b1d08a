"""One rank of an FSDP2 Saving stage, for tests and the benchmark (started by torchrun, gloo on the CPU).

    torchrun --standalone --nproc-per-node 2 -m tests.trainer.sharded_save_worker SETTINGS.json

The settings name a published model snapshot, a work directory, LoRA (none, adapter or merged),
whether to train first, the largest output file, and optionally a damage done to the folder
before it is verified. Each rank runs the real Initialization (the model loaded and sharded with
FSDP2), optionally the real Training, measures one forward pass of the sharded model, then runs
the real Saving stage while a thread samples its VmRSS every 2 ms, and writes `rank-<N>.json`
into the work directory: its RSS after imports, before Saving and at its highest during Saving,
the forward pass's growth, the bytes of its own shard and of the whole model, the stage's
seconds, `refused` (the verification's reason and message, when it failed the output) and `error`
(the stage's failure as this rank's Result would name it) and `threads_after_teardown` (its threads' names once
`teardown` has ended the process group). `fail_write` makes rank 0's writes of its
output files (`model_file`) or of the tokenizer (`tokenizer`) fail as a full disk does.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from kubetune_trainer.classify import classify
from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import LoraConfig, Stage, Strategy
from kubetune_trainer.errors import CheckpointInvalid
from kubetune_trainer.handoffs import TrainingOutcome
from kubetune_trainer.saving import stream
from kubetune_trainer.stages import initialize, save, train
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.distributed import barrier, teardown
from kubetune_trainer.verify_output import mean_loss, verification_examples

from .training_jobs import chat_lines, tokenized, trainer_config, training_context, write_jsonl


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    """The highest VmRSS seen while the `with` block runs (sampled every 2 ms)."""

    def __init__(self) -> None:
        self.peak = 0
        self._running = False
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while self._running:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __enter__(self) -> PeakRss:
        self.peak = rss_bytes()
        self._running = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def _damage(settings: dict[str, Any]) -> Callable[[Path], None] | None:
    """What a test does to the written folder before it is verified: zero one tensor, or drop it."""
    how = settings.get("damage")
    if how is None:
        return None

    def damage(folder: Path) -> None:
        path = folder / "model.safetensors"
        tensors = load_file(path)
        name = "model.layers.0.mlp.down_proj.weight"
        if how == "zero":
            tensors[name] = torch.zeros_like(tensors[name])
        else:
            del tensors[name]
        save_file(tensors, path, metadata={"format": "pt"})

    return damage


def _fail_rank_zero_writes(settings: dict[str, Any], *, rank: int, tokenizer: Any) -> None:
    """What a test breaks on rank 0: its output files (`save_file`) or the tokenizer's files, as a full disk does."""
    where = settings.get("fail_write")
    if where is None or rank != 0:
        return

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "model_file":
        stream.save_file = no_space  # type: ignore[assignment]
    else:
        tokenizer.save_pretrained = no_space


def thread_names() -> list[str]:
    """The names of this process's threads as the kernel knows them (C++ threads included: gloo's are
    `pt_gloo_runloop` and `gloo_tcp_loop`)."""
    return sorted((task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir())


def main(settings_path: Path) -> None:
    settings: dict[str, Any] = json.loads(settings_path.read_text(encoding="utf-8"))
    after_imports = rss_bytes()
    torch.set_num_threads(1)
    info = DistInfo.from_env(os.environ)
    # Everything the stages made is unreferenced once this returns, as when the trainer's pipeline returns.
    figures = _initialize_train_and_save(settings, info=info, after_imports=after_imports)
    barrier()
    teardown()
    figures["threads_after_teardown"] = thread_names()
    work = Path(settings["work_dir"])
    (work / f"rank-{info.rank}.json").write_text(json.dumps(figures), encoding="utf-8")


def _initialize_train_and_save(settings: dict[str, Any], *, info: DistInfo, after_imports: int) -> dict[str, Any]:
    work = Path(settings["work_dir"])
    model = TinyModel(settings["repo_id"], settings["revision_sha"], Path(settings["snapshot"]))
    tokenizer = AutoTokenizer.from_pretrained(str(model.snapshot_path))
    lines, valid = chat_lines(16, seed=3), chat_lines(4, seed=9)
    lora = settings["lora"]
    config = trainer_config(
        model,
        work_dir=work,
        training_file=write_jsonl(work / f"train-{info.rank}.jsonl", lines),
        validation_file=write_jsonl(work / f"valid-{info.rank}.jsonl", valid),
        lora=None
        if lora == "none"
        else LoraConfig(r=8, alpha=16, dropout=0.0, target_modules=["all-linear"], merge=lora == "merged"),
        batch_size=4,
        learning_rate=2e-2 if lora != "none" else 3e-3,
        n_evals=0,
    )
    runtime = config.runtime.model_copy(update={"strategy": Strategy.FSDP})
    config = config.model_copy(update={"runtime": runtime})
    ctx, _, downloaded = training_context(
        config,
        model=model,
        tokenizer=tokenizer,
        train=tokenized(tokenizer, lines),
        validation=tokenized(tokenizer, valid),
        dist=info,
    )
    initialized = initialize.run(ctx, downloaded)
    trained = (
        train.run(ctx, downloaded, initialized)
        if settings["train"]
        else TrainingOutcome(total_steps=0, metrics={}, resumed_from_step=None)  # the model as loaded
    )
    own = sum(p.to_local().numel() * p.element_size() for p in initialized.model.parameters())
    whole = sum(p.numel() * p.element_size() for p in initialized.model.parameters())
    # What one forward pass of the sharded model takes (FSDP2 gathers a block or two at a time):
    # the Saving stage scores the model twice, so its peak includes this much whatever it writes.
    examples = verification_examples(downloaded.examples.validation, downloaded.examples.train)
    barrier()
    with PeakRss() as forward:
        before_forward = rss_bytes()
        mean_loss(initialized.model, examples, device=torch.device("cpu"))
    barrier()
    before = rss_bytes()
    started = time.monotonic()
    refused: str | None = None
    failed: dict[str, Any] | None = None
    _fail_rank_zero_writes(settings, rank=info.rank, tokenizer=downloaded.tokenizer)
    with PeakRss() as sampled:
        try:
            save.run(
                ctx,
                downloaded,
                initialized,
                trained,
                max_shard_bytes=int(settings["max_shard_bytes"]),
                before_verify=_damage(settings),
            )
        except Exception as error:  # what the pipeline would put in this rank's Result
            failed = classify(error, stage=Stage.SAVING, job_uid=config.job.uid).model_dump(mode="json", by_alias=True)
            if isinstance(error, CheckpointInvalid):
                refused = f"{error.reason}: {error.message}"
    seconds = time.monotonic() - started
    return {
        "rank": info.rank,
        "after_imports": after_imports,
        "before_saving": before,
        "peak_saving": sampled.peak,
        "forward_growth": forward.peak - before_forward,
        "own_shard_bytes": own,
        "model_bytes": whole,
        "saving_seconds": seconds,
        "refused": refused,
        "error": failed,
    }


if __name__ == "__main__":
    main(Path(sys.argv[1]))
