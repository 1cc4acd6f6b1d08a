"""Initialization: seed, join the process group, load tokenizer and model, add LoRA, wrap for DDP/FSDP."""

from __future__ import annotations

from transformers import AutoTokenizer

from ..context import RunContext
from ..training.distributed import init_process_group, pick_device
from ..training.seeding import seed_everything
from ..training.setup import prepare_model


def run(ctx: RunContext) -> None:
    if ctx.model_path is None:
        raise RuntimeError("Initialization needs the model snapshot from DataDownload (ctx.model_path is unset)")
    seed_everything(ctx.config.hyperparameters.seed)
    init_process_group(ctx.dist, device=pick_device(ctx.dist))
    if ctx.tokenizer is None:
        ctx.tokenizer = AutoTokenizer.from_pretrained(str(ctx.model_path))
    ctx.model, ctx.training_state = prepare_model(
        ctx.model_path, runtime=ctx.config.runtime, lora=ctx.config.lora, dist_info=ctx.dist
    )
