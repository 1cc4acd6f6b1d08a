"""With LoRA only the adapter trains: the base weights leave training exactly as they came."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint import FileSystemReader
from transformers import AutoTokenizer

from kubetune_trainer.contract import LoraConfig
from kubetune_trainer.stages import initialize, train
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.checkpoint import MODEL_KEY, SHARDS_DIR

from .training_jobs import chat_lines, tokenized, trainer_config, training_context, write_jsonl


def test_only_adapter_parameters_change(tiny_llama: TinyModel, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.snapshot_path))
    lines = chat_lines(32, seed=4)
    lora = LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=False)
    config = trainer_config(
        tiny_llama, work_dir=tmp_path, training_file=write_jsonl(tmp_path / "t.jsonl", lines), lora=lora, n_evals=0
    )
    ctx, _, downloaded = training_context(
        config, model=tiny_llama, tokenizer=tokenizer, train=tokenized(tokenizer, lines)
    )

    initialized = initialize.run(ctx, downloaded)
    model = initialized.model
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable
    assert all("lora_" in name for name in trainable)
    # all-linear: every projection of every layer, and never the output head.
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    lora_b_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}

    train.run(ctx, downloaded, initialized)

    base = load_file(str(tiny_llama.snapshot_path / "model.safetensors"))
    after = model.get_base_model().state_dict()
    for name, weight in base.items():
        wrapped = name.replace(".weight", ".base_layer.weight")  # peft moves adapted weights under base_layer
        assert torch.equal(after[wrapped if wrapped in after else name], weight), name
    changed = [n for n, p in model.named_parameters() if "lora_B" in n and not torch.equal(p, lora_b_before[n])]
    assert len(changed) == len(lora_b_before)
    # The checkpoint holds the adapter alone, not another copy of the frozen base.
    step = next(path for path in (ctx.paths.checkpoints / "tiny").rglob("step-*") if (path / SHARDS_DIR).is_dir())
    stored = FileSystemReader(str(step / SHARDS_DIR)).read_metadata().state_dict_metadata
    weights = [name for name in stored if name.startswith(f"{MODEL_KEY}.")]
    assert weights
    assert all("lora_" in name for name in weights)
