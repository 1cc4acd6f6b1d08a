"""Saving: the trained model as a folder a user loads, named `<model>-<suffix>`, with its model card.

Layout of the folder (`output.modelName` under the work directory, then uploaded whole):

- full fine-tuning: the model (safetensors, sharded above `SHARD_SIZE`), config.json,
  generation_config.json, the tokenizer and its chat template, README.md;
- LoRA: the adapter (adapter_config.json, adapter_model.safetensors) with the tokenizer and
  README.md; with `lora.merge`, the folder holds the merged full model instead and the adapter
  moves to `adapter/`.

Under FSDP gathering the full weights is a collective: every rank takes part, rank 0 writes.

Before the model card is written, the folder is verified (`verify_output`): reloaded from disk
as a user loads it, it must give the in-memory model's loss on a few examples and tokenize and
render the chat template the same way. A difference fails the stage (OutputVerificationFailed),
so nothing is uploaded.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from transformers import AutoModelForCausalLM

from .. import saved_output
from ..context import RunContext
from ..contract import Strategy
from ..data.tokenization import TokenizedExample
from ..errors import ComputationFailed
from ..model_card import render_model_card
from ..model_rules import PICKLE_SUFFIXES
from ..training.distributed import unwrap
from ..training.setup import TrainingSetup
from ..verify_output import OutputCheck, loss_tolerance, mean_loss, verification_examples, verify_saved_output
from .train import kept_model_dir

SHARD_SIZE = "5GB"
"""Largest safetensors file written, as on the Hugging Face Hub."""

ADAPTER_DIR = "adapter"


def run(ctx: RunContext, *, before_verify: Callable[[Path], None] | None = None) -> None:
    """Write the output folder and verify it; `before_verify` (tests only) may damage it in between."""
    if ctx.model is None or ctx.tokenizer is None:
        raise RuntimeError("Saving needs the trained model and tokenizer (ctx.model or ctx.tokenizer is unset)")
    config = ctx.config
    model: Any = unwrap(ctx.model)
    # Scored before merging changes the model in place, so a merged output is checked against
    # the model as trained (adapter applied). Under FSDP forwards are collectives: every rank scores.
    reference = _reference(ctx, model) if ctx.dist.is_main or _sharded(ctx) else None
    state_dict = _gathered_state_dict(model) if _sharded(ctx) else None
    if not ctx.dist.is_main or reference is None:
        return
    name = config.output.model_name
    folder = ctx.paths.output / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    # Training switched the KV cache off (packing needs it off); whoever loads the model wants it.
    _base_config(model).use_cache = True

    lora = config.lora
    if lora is None:
        model.save_pretrained(folder, state_dict=state_dict, max_shard_size=SHARD_SIZE)
        layout = "The full fine-tuned model: load it with `AutoModelForCausalLM.from_pretrained(<this folder>)`."
    elif not lora.merge:
        _save_adapter(ctx, model, folder, state_dict=state_dict)
        layout = (
            "A LoRA adapter for the base model named in the lineage: load it with "
            "`PeftModel.from_pretrained(base_model, <this folder>)`."
        )
    else:
        adapter = folder / ADAPTER_DIR
        _save_adapter(ctx, model, adapter, state_dict=state_dict)
        merged = _merged(ctx, model, adapter)
        merged.save_pretrained(folder, max_shard_size=SHARD_SIZE)
        layout = (
            "The base model with the trained LoRA adapter merged in: load it with "
            "`AutoModelForCausalLM.from_pretrained(<this folder>)`. The adapter alone is in `adapter/` "
            "(`PeftModel.from_pretrained(base_model, <this folder>/adapter)`)."
        )
    ctx.tokenizer.save_pretrained(folder)
    _refuse_pickles(folder)
    if before_verify is not None:
        before_verify(folder)
    check = _verify(ctx, folder, reference=reference, adapter=lora is not None and not lora.merge)
    ctx.metrics["output_verification_loss_difference"] = check.loss_difference
    (folder / "README.md").write_text(render_model_card(ctx, layout=layout), encoding="utf-8")
    _readable_by_all(folder)
    if (job_dir := kept_model_dir(ctx)) is not None:
        saved_output.keep(folder, job_dir=job_dir, name=name)  # a retry after this point resumes at Upload
    ctx.saved_dir = folder
    ctx.output_name = name
    files = [p for p in folder.rglob("*") if p.is_file()]
    ctx.reporter.note(f"saved {name}: {len(files)} files, {sum(p.stat().st_size for p in files):,} bytes")


@dataclass(frozen=True)
class _Reference:
    """The in-memory model's loss on the verification examples, and how it was computed."""

    loss: float
    examples: list[TokenizedExample]
    weight_dtype: torch.dtype
    tolerance: float


def _reference(ctx: RunContext, model: Any) -> _Reference:
    examples = verification_examples(ctx.validation_examples, ctx.train_examples)
    setup = ctx.training_state
    autocast: Callable[[], AbstractContextManager[None]]
    if isinstance(setup, TrainingSetup):
        device, autocast, autocast_dtype = setup.device, setup.precision.autocast, setup.precision.autocast_dtype
    else:  # a context built without Initialization (tests of this stage alone): the CPU, no autocast
        device, autocast, autocast_dtype = torch.device("cpu"), nullcontext, None
    weight_dtype = _base_model(model).dtype
    return _Reference(
        loss=mean_loss(model, examples, device=device, autocast=autocast),
        examples=examples,
        weight_dtype=weight_dtype,
        tolerance=loss_tolerance(weight_dtype, autocast_dtype=autocast_dtype),
    )


def _verify(ctx: RunContext, folder: Path, *, reference: _Reference, adapter: bool) -> OutputCheck:
    check = verify_saved_output(
        folder,
        reference_loss=reference.loss,
        examples=reference.examples,
        tokenizer=ctx.tokenizer,
        weight_dtype=reference.weight_dtype,
        tolerance=reference.tolerance,
        adapter_base=ctx.model_path if adapter else None,
    )
    ctx.reporter.note(
        f"verified {folder.name}: reloaded loss {check.reloaded_loss:.6f} vs trained {check.reference_loss:.6f} "
        f"on {check.examples} example(s) (difference {check.loss_difference:.1e}); tokenizer and chat template match"
    )
    return check


def _sharded(ctx: RunContext) -> bool:
    return ctx.dist.distributed and ctx.config.runtime.strategy is Strategy.FSDP


def _gathered_state_dict(model: Any) -> dict[str, Any]:
    """The full, unsharded weights on every rank (FSDP2 keeps only a shard each)."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return dict(get_model_state_dict(model, options=options))


def _base_model(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _base_config(model: Any) -> Any:
    return _base_model(model).config


def _save_adapter(ctx: RunContext, model: Any, folder: Path, *, state_dict: dict[str, Any] | None) -> None:
    model.save_pretrained(folder, state_dict=state_dict)
    ctx.tokenizer.save_pretrained(folder)
    if ctx.adapter_lineage is None:
        # peft records the local snapshot path as the base; users need the repo and commit instead.
        _point_adapter_at(folder, repo=ctx.config.model.repo, revision=ctx.revision_sha)


def _point_adapter_at(folder: Path, *, repo: str, revision: str | None) -> None:
    path = folder / "adapter_config.json"
    adapter_config = json.loads(path.read_text(encoding="utf-8"))
    adapter_config["base_model_name_or_path"] = repo
    adapter_config["revision"] = revision
    path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True), encoding="utf-8")


def _merged(ctx: RunContext, model: Any, adapter: Path) -> Any:
    """The base with the adapter folded in. Under FSDP the base is loaded afresh: shards cannot merge."""
    if not _sharded(ctx):
        return model.merge_and_unload()
    from peft import PeftModel  # noqa: PLC0415 (seconds to import; only this rare path needs it here)

    base = AutoModelForCausalLM.from_pretrained(str(ctx.model_path), trust_remote_code=False, use_safetensors=True)
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()


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
