"""Bytes a block leaves allocated on the CPU, from glibc's own count: what autograd keeps for backward.

Saved-tensor hooks (`saved_for_backward`) cannot count a model that packs some saved tensors itself
(`training.lean_layers` recomputes the MLP's product in backward, and steps aside under any other
hook), so these tests read glibc's bytes in use, heap and mmapped chunks together, before and after:
torch's CPU tensors are glibc allocations. The count is the process's, so a test measures in a fresh
process (`in_a_fresh_process`).
"""

from __future__ import annotations

import ctypes
import gc
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = _MallInfo2


def bytes_in_use() -> int:
    """glibc's allocated bytes: chunks in use in every arena plus mmapped chunks."""
    info = _LIBC.mallinfo2()
    return int(info.uordblks + info.hblkhd)


@dataclass
class Held:
    bytes: int = 0


@contextmanager
def held_after() -> Iterator[Held]:
    """`with held_after() as held: loss = model(...)`; then `held.bytes` is what the block left allocated."""
    held = Held()
    gc.collect()
    before = bytes_in_use()
    yield held
    gc.collect()
    held.bytes = bytes_in_use() - before


def in_a_fresh_process(function: Callable[..., Any], /, **kwargs: Any) -> Any:
    """`function(**kwargs)` run in a new Python process, its JSON result returned.

    glibc's count is the whole process's: a thread another test left running (a server, a reporter)
    would add its allocations to the block's. A fresh process holds nothing but the measurement.
    """
    code = (
        "import importlib, json, sys; "
        "function = getattr(importlib.import_module(sys.argv[1]), sys.argv[2]); "
        "print('RESULT ' + json.dumps(function(**json.loads(sys.argv[3]))))"
    )
    command = [sys.executable, "-c", code, function.__module__, function.__qualname__, json.dumps(kwargs)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert done.returncode == 0, done.stderr[-3000:]
    assert line is not None, done.stdout[-3000:]
    return json.loads(line.removeprefix("RESULT "))


def as_initialization_makes_it(model: Any, *, lean: bool = True, rank: int | None = None, dropout: float = 0.0) -> Any:
    """`model` as Initialization makes it: lean norms and MLPs where they serve (`lean`), and with a LoRA `rank`
    peft on all-linear with the update fused into the base output."""
    from kubetune_trainer.contract import LoraConfig
    from kubetune_trainer.training.lean_layers import make_layers_lean
    from kubetune_trainer.training.lora import apply_lora
    from kubetune_trainer.training.lora_fused import fuse_lora_updates

    if lean:
        make_layers_lean(model)
    if rank is not None:
        adapters = LoraConfig(r=rank, alpha=2 * rank, dropout=dropout, target_modules=["all-linear"], merge=False)
        model = apply_lora(model, adapters)
        fuse_lora_updates(model)
    return model


def held_per_token(model: Any, *, tokens: int, vocab_size: int = 300) -> float:
    """The bytes one training-mode forward of `model` over a random row of `tokens` leaves allocated, per token, no
    logits computed. A first forward and backward (its gradients dropped) allocates what stays: kernels' caches,
    the rotary table."""
    import torch

    model.train()
    ids = torch.randint(0, vocab_size, (1, tokens), generator=torch.Generator().manual_seed(1))
    model(input_ids=ids, labels=ids).loss.backward()
    model.zero_grad(set_to_none=True)
    with held_after() as measured:
        output = model(input_ids=ids, logits_to_keep=torch.zeros(0, dtype=torch.long))
    del output
    return measured.bytes / tokens
