"""Saving: the trained model as a folder a user loads, named `<model>-<suffix>`, with its model card.

Layout of the folder (`output.modelName` under the work directory, then uploaded whole):

- full fine-tuning: the model (safetensors files of at most `SHARD_BYTES`, 5 GB, with their index), config.json,
  generation_config.json, the tokenizer and its chat template, README.md;
- LoRA: the adapter (adapter_config.json, adapter_model.safetensors) with the tokenizer and
  README.md; with `lora.merge`, the folder holds the merged full model instead and the adapter
  moves to `adapter/`.

Under FSDP2 no process ever holds the whole model (`saving`): every rank plans the same output
files from the parameters' names and sizes, each file's tensors are gathered one at a time (a
LoRA merge computed per tensor), rank 0 writes the file and frees it before the next; the
verification loads the files back into the ranks' own shards, one tensor at a time, and scores
them with the sharded forward. In one process or under DDP (every rank holds the whole model
already) rank 0 writes with `save_pretrained`, file by file, and reloads the folder as a user would.

Before the model card is written, the folder is verified (`verify_output`): reloaded from disk
as a user loads it, it must give the in-memory model's loss on a few examples and tokenize and
render the chat template the same way. A difference fails the stage (OutputVerificationFailed),
so nothing is uploaded.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import saved_output
from ..classify import redact_urls
from ..context import RunContext
from ..contract import Strategy
from ..data.tokenization import TokenizedExample
from ..errors import ComputationFailed
from ..handoffs import DownloadResult, InitializedRun, SavedModel, TrainingOutcome
from ..model_card import render_model_card
from ..model_rules import PICKLE_SUFFIXES
from ..saving.fail_together import FailTogether
from ..saving.sharded import OutputKind, gathered_adapter, verify_in_shards, write_model
from ..saving.shards import SHARD_BYTES
from ..storage import S3Settings
from ..training.checkpoint_location import CheckpointPlace
from ..training.distributed import unwrap
from ..training.lora import point_adapter_at
from ..verify_output import OutputCheck, loss_tolerance, mean_loss, verification_examples, verify_saved_output
from .train import kept_model_place

ADAPTER_DIR = "adapter"


def run(
    ctx: RunContext,
    downloaded: DownloadResult,
    initialized: InitializedRun,
    trained: TrainingOutcome,
    *,
    before_verify: Callable[[Path], None] | None = None,
    max_shard_bytes: int = SHARD_BYTES,
) -> SavedModel | None:
    """Write the output folder and verify it; `before_verify` (tests only) may damage it in between.

    `max_shard_bytes` is the largest safetensors file written (tests set a small one). None on the
    ranks other than 0: they take part in gathering and verifying under FSDP, rank 0 writes.
    """
    config = ctx.config
    # The model's save_pretrained, peft's merge_and_unload and get_base_model are not in nn.Module's type.
    model: Any = unwrap(initialized.model)
    sharded = _sharded(ctx)
    # Scored before merging changes the model in place, so a merged output is checked against
    # the model as trained (adapter applied). Under FSDP forwards are collectives: every rank scores.
    reference = _reference(downloaded, initialized, model) if ctx.dist.is_main or sharded else None
    if reference is None:
        return None
    name = config.output.model_name
    folder = ctx.paths.output / name
    writes = ctx.dist.is_main
    # Under FSDP the other ranks stay in the stage, in collectives with rank 0: each of its writes ends with
    # every rank learning whether it failed, so none waits on a rank that has left.
    together = FailTogether(job_uid=config.job.uid, collective=sharded)
    with together.around():
        if writes:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
    # Training switched the KV cache off (packing needs it off); whoever loads the model wants it.
    _base_config(model).use_cache = True

    lora = config.lora
    kind = OutputKind.FULL if lora is None else OutputKind.MERGED if lora.merge else OutputKind.ADAPTER
    if sharded:
        _write_from_shards(
            ctx, downloaded, model, folder, kind=kind, max_shard_bytes=max_shard_bytes, together=together
        )
    else:
        _write_whole(ctx, downloaded, model, folder, kind=kind, max_shard_bytes=max_shard_bytes)
    with together.around():
        if writes:
            downloaded.tokenizer.save_pretrained(folder)
            _refuse_pickles(folder)
            if before_verify is not None:
                before_verify(folder)
    check = _verify(ctx, downloaded, initialized, model, folder, reference=reference, kind=kind, sharded=sharded)
    if check is None:  # a rank other than 0 under FSDP: its part is done
        return None
    card = render_model_card(
        ctx,
        downloaded=downloaded,
        setup=initialized.setup,
        trained=trained,
        metrics={**trained.metrics, "output_verification_loss_difference": check.loss_difference},
        layout=_LAYOUTS[kind],
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
    _readable_by_all(folder)
    if (place := kept_model_place(ctx)) is not None:
        _keep(ctx, folder, place=place, name=name)  # a retry after this point resumes at Upload
    files = [p for p in folder.rglob("*") if p.is_file()]
    ctx.reporter.note(f"saved {name}: {len(files)} files, {sum(p.stat().st_size for p in files):,} bytes")
    return SavedModel(folder=folder, name=name)


def _keep(ctx: RunContext, folder: Path, *, place: CheckpointPlace, name: str) -> None:
    """Keep the verified model for a retry; a keep that fails costs only a retry's training, not this run."""
    try:
        saved_output.keep(folder, place=place, name=name, s3=S3Settings.from_env(ctx.environ))
    except Exception as exc:  # the filesystem's or the store's own errors, of many kinds
        where = place.remote or str(place.local)
        ctx.warn(
            "SavedModelNotKept",
            redact_urls(
                f"the saved model could not be kept under {where} ({type(exc).__name__}: {exc}): "
                "a retry after a failed upload trains again"
            ),
        )


_LAYOUTS = {
    OutputKind.FULL: "The full fine-tuned model: load it with `AutoModelForCausalLM.from_pretrained(<this folder>)`.",
    OutputKind.ADAPTER: (
        "A LoRA adapter for the base model named in the lineage: load it with "
        "`PeftModel.from_pretrained(base_model, <this folder>)`."
    ),
    OutputKind.MERGED: (
        "The base model with the trained LoRA adapter merged in: load it with "
        "`AutoModelForCausalLM.from_pretrained(<this folder>)`. The adapter alone is in `adapter/` "
        "(`PeftModel.from_pretrained(base_model, <this folder>/adapter)`)."
    ),
}


def _write_whole(
    ctx: RunContext, downloaded: DownloadResult, model: Any, folder: Path, *, kind: OutputKind, max_shard_bytes: int
) -> None:
    """One process, or DDP's rank 0 (every rank holds the whole model): transformers writes file by file."""
    if kind is OutputKind.FULL:
        model.save_pretrained(folder, max_shard_size=max_shard_bytes)
        return
    adapter = folder if kind is OutputKind.ADAPTER else folder / ADAPTER_DIR
    _save_adapter(ctx, downloaded, model, adapter, state_dict=None)
    if kind is OutputKind.MERGED:
        model.merge_and_unload().save_pretrained(folder, max_shard_size=max_shard_bytes)


def _write_from_shards(
    ctx: RunContext,
    downloaded: DownloadResult,
    model: Any,
    folder: Path,
    *,
    kind: OutputKind,
    max_shard_bytes: int,
    together: FailTogether,
) -> None:
    """FSDP2: every rank takes part in each tensor's gather, rank 0 writes file by file (`saving`)."""
    writes = ctx.dist.is_main
    if kind is not OutputKind.FULL:
        adapter_state = gathered_adapter(model, keeps=writes)
        with together.around():
            if writes:
                _save_adapter(
                    ctx,
                    downloaded,
                    model,
                    folder if kind is OutputKind.ADAPTER else folder / ADAPTER_DIR,
                    state_dict=adapter_state,
                )
        del adapter_state
    if kind is not OutputKind.ADAPTER:
        merged = kind is OutputKind.MERGED
        write_model(folder, model, merged=merged, writes=writes, max_shard_bytes=max_shard_bytes, together=together)


@dataclass(frozen=True)
class _Reference:
    """The in-memory model's loss on the verification examples, and how it was computed."""

    loss: float
    examples: list[TokenizedExample]
    weight_dtype: torch.dtype
    tolerance: float


def _reference(downloaded: DownloadResult, initialized: InitializedRun, model: Any) -> _Reference:
    examples = verification_examples(downloaded.examples.validation, downloaded.examples.train)
    precision = initialized.setup.precision
    device, autocast, autocast_dtype = initialized.setup.device, precision.autocast, precision.autocast_dtype
    weight_dtype = _base_model(model).dtype
    return _Reference(
        loss=mean_loss(model, examples, device=device, autocast=autocast),
        examples=examples,
        weight_dtype=weight_dtype,
        tolerance=loss_tolerance(weight_dtype, autocast_dtype=autocast_dtype),
    )


def _verify(
    ctx: RunContext,
    downloaded: DownloadResult,
    initialized: InitializedRun,
    model: Any,
    folder: Path,
    *,
    reference: _Reference,
    kind: OutputKind,
    sharded: bool,
) -> OutputCheck | None:
    if sharded:
        setup = initialized.setup
        check = verify_in_shards(
            folder,
            model,
            kind=kind,
            is_main=ctx.dist.is_main,
            reference_loss=reference.loss,
            examples=reference.examples,
            tokenizer=downloaded.tokenizer,
            tolerance=reference.tolerance,
            device=setup.device,
            autocast=setup.precision.autocast,
        )
        if check is None:
            return None
    else:
        check = verify_saved_output(
            folder,
            reference_loss=reference.loss,
            examples=reference.examples,
            tokenizer=downloaded.tokenizer,
            weight_dtype=reference.weight_dtype,
            tolerance=reference.tolerance,
            adapter_base=downloaded.model.path if kind is OutputKind.ADAPTER else None,
        )
    ctx.reporter.note(
        f"verified {folder.name}: reloaded loss {check.reloaded_loss:.6f} vs trained {check.reference_loss:.6f} "
        f"on {check.examples} example(s) (difference {check.loss_difference:.1e}); tokenizer and chat template match"
    )
    return check


def _sharded(ctx: RunContext) -> bool:
    return ctx.dist.distributed and ctx.config.runtime.strategy is Strategy.FSDP


def _base_model(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _base_config(model: Any) -> Any:
    return _base_model(model).config


def _save_adapter(
    ctx: RunContext, downloaded: DownloadResult, model: Any, folder: Path, *, state_dict: dict[str, Any] | None
) -> None:
    model.save_pretrained(folder, state_dict=state_dict)
    downloaded.tokenizer.save_pretrained(folder)
    if downloaded.model.adapter_lineage is None:
        # peft records the local snapshot path as the base; users need the repo and commit instead.
        point_adapter_at(folder, repo=ctx.config.model.repo, revision=downloaded.model.revision_sha)


def _refuse_pickles(folder: Path) -> None:
    pickles = [p.name for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise ComputationFailed(
            f"saving wrote pickle files {pickles}; kubetune ships safetensors only",
            reason="PickleWeightsWritten",
            hint="Report this with the job UID: the installed transformers or peft saved in an unsafe format.",
        )


def _readable_by_all(folder: Path) -> None:
    """Weights are written as owner-only temp files; on a shared volume the pods that serve the model run as
    other users, so every file is made world-readable (never writable)."""
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
