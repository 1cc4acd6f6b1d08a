"""The Saving stage under FSDP2: the output written from the ranks' shards and verified back into them.

Every function here is a collective: all ranks call it with the same arguments but `writes` /
`is_main` (true on rank 0 alone). Rank 0 writes and reads the folder; the other ranks only
take part in the gathers and scatters, one tensor at a time.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from ..data.tokenization import TokenizedExample
from ..errors import CheckpointInvalid
from ..verify_output import OutputCheck, check_tokenizer, compare_losses, mean_loss, output_invalid
from .fail_together import ALONE, FailTogether
from .reload import ReloadTarget, agreed, file_problem, load_into_shards
from .shards import SHARD_BYTES, files_of
from .sources import (
    OutputTensor,
    active_adapter,
    adapter_tensors,
    distinct_tensors,
    full_model_tensors,
    merged_lora_tensors,
)
from .stream import reshard, write_config, write_streamed

ADAPTER_WEIGHTS = "adapter_model.safetensors"


class OutputKind(enum.Enum):
    """What the folder being verified holds."""

    FULL = "full"
    ADAPTER = "adapter"
    MERGED = "merged"


def write_model(
    folder: Path,
    model: Any,
    *,
    merged: bool,
    writes: bool,
    max_shard_bytes: int = SHARD_BYTES,
    together: FailTogether = ALONE,
) -> None:
    """The full model (or, `merged`, the peft model's base with its adapter folded in) as safetensors and config;
    every rank learns of a failed write at once (`together`)."""
    reshard(model)
    tensors = merged_lora_tensors(model) if merged else full_model_tensors(model)
    write_streamed(folder, tensors, writes=writes, max_shard_bytes=max_shard_bytes, together=together)
    with together.around():
        if writes:
            write_config(folder, model.get_base_model() if merged else model)


def gathered_adapter(model: Any, *, keeps: bool) -> dict[str, torch.Tensor]:
    """The adapter's tensors, whole, on the rank that `keeps` them (empty elsewhere): one small output file."""
    reshard(model)
    kept: dict[str, torch.Tensor] = {}
    for tensor in adapter_tensors(model):
        whole = tensor.gather(keeps)
        if whole is not None:
            kept[tensor.name] = whole
    return kept


def verify_in_shards(
    folder: Path,
    model: Any,
    *,
    kind: OutputKind,
    is_main: bool,
    reference_loss: float,
    examples: list[TokenizedExample],
    tokenizer: Any,
    tolerance: float,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> OutputCheck | None:
    """Load the written tensors back into the model's shards and score them; the check on rank 0, None elsewhere.

    The trained model's own shards receive the saved values (the stage needs the trained weights
    no more): for a merged output the base weights take the merged ones and the adapter is
    switched off while scoring. Rank 0 also checks the tokenizer, and that the saved config
    builds a model whose tensors are the files' (names and shapes), as `from_pretrained` needs.
    """
    reshard(model)
    targets = _targets(model, kind=kind)
    failure: CheckpointInvalid | None = None
    files: dict[str, Path] = {}
    if is_main:
        try:
            check_tokenizer(folder, tokenizer=tokenizer, examples=examples)
            files = _weight_files(folder, kind=kind)
            problem = file_problem(files, targets)
            if problem is None and kind is not OutputKind.ADAPTER:
                problem = _config_problem(folder, files)
            if problem is not None:
                raise output_invalid(problem)
        except CheckpointInvalid as refused:
            failure = refused
        except Exception as broken:  # every rank must learn of it, or the others wait in a collective forever
            failure = output_invalid(
                f"the saved output {folder.name} cannot be read back: {type(broken).__name__}: {broken}"
            )
    verdict = agreed(None if failure is None else failure.message)
    if failure is not None:
        raise failure
    if verdict is not None:
        raise output_invalid(f"rank 0 refused the saved output {folder.name}")
    load_into_shards(files, targets, reads=is_main)
    scoring = model.disable_adapter() if kind is OutputKind.MERGED else nullcontext()
    with scoring:
        reloaded = mean_loss(model, examples, device=device, autocast=autocast)
    if not is_main:
        return None
    return compare_losses(
        folder, reference_loss=reference_loss, reloaded_loss=reloaded, examples=len(examples), tolerance=tolerance
    )


def _targets(model: Any, *, kind: OutputKind) -> list[ReloadTarget]:
    tensors: list[OutputTensor]
    if kind is OutputKind.ADAPTER:
        # peft saves `...lora_A.<adapter>.weight` as `...lora_A.weight`.
        suffix = f".{active_adapter(model)}"
        return [ReloadTarget(t.name.replace(suffix, ""), t.source) for t in adapter_tensors(model)]
    tensors = merged_lora_tensors(model) if kind is OutputKind.MERGED else full_model_tensors(model)
    return [ReloadTarget(t.name, t.source) for t in tensors]


def _weight_files(folder: Path, *, kind: OutputKind) -> dict[str, Path]:
    try:
        if kind is OutputKind.ADAPTER:
            from safetensors import safe_open  # noqa: PLC0415

            path = folder / ADAPTER_WEIGHTS
            with safe_open(str(path), framework="pt") as handle:
                return dict.fromkeys(handle.keys(), path)
        return files_of(folder)
    except Exception as unreadable:  # any reason the weights cannot be read is a broken output
        raise output_invalid(
            f"the saved weights in {folder.name} cannot be read: {type(unreadable).__name__}: {unreadable}"
        ) from unreadable


def _config_problem(folder: Path, files: dict[str, Path]) -> str | None:
    """Whether the saved config.json builds a model with exactly the saved tensors (built on the meta device)."""
    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=False)  # type: ignore[no-untyped-call]
    except Exception as unloadable:
        return f"the saved config in {folder.name} cannot be loaded back: {type(unloadable).__name__}: {unloadable}"
    built = [ReloadTarget(name, tensor) for name, tensor in distinct_tensors(skeleton)]
    problem = file_problem(files, built, dtypes=False)
    return None if problem is None else f"the saved config.json does not describe the saved weights: {problem}"
