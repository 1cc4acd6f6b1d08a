"""The trainer's own calls raise no FutureWarning: a trainer log holds only what a user can act on.

Two came from kubetune's code in every run: DDP's `broadcast_buffers` (deprecated in torch 2.13),
once per rank, and peft's read of transformers' deprecated `is_gradient_checkpointing`, at every
LoRA wrap. Both are driven here as a run drives them, with every warning recorded.
"""

from __future__ import annotations

import os
import socket
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import LoraConfig, Strategy
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.distributed import wrap_model
from kubetune_trainer.training.lora import apply_lora
from kubetune_trainer.training.setup import load_model


def test_a_lora_wrap_warns_nothing(tiny_llama: TinyModel) -> None:
    model = load_model(tiny_llama.snapshot_path, dtype=torch.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=False))
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []


def _wrap_on_rank(rank: int, port: int, found: dict[int, list[str]]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wrapped = wrap_model(
                torch.nn.Linear(4, 4),
                info=DistInfo(rank=rank, world_size=2),
                strategy=Strategy.DDP,
                device=torch.device("cpu"),
            )
            wrapped(torch.ones(2, 4)).sum().backward()
        found[rank] = [f"{w.category.__name__}: {w.message}" for w in caught]
    finally:
        dist.destroy_process_group()


def test_a_ddp_wrap_warns_nothing_on_any_rank() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with mp.Manager() as manager:
        found = manager.dict()
        mp.spawn(_wrap_on_rank, args=(port, found), nprocs=2, join=True)
        assert dict(found) == {0: [], 1: []}
