"""`kubetune run --local --nproc-per-node 2`: the same job under torchrun, two gloo ranks on the CPU.

Both ranks train; only rank 0 reports (one set of stage lines on screen), saves, uploads and
writes the termination message. Under FSDP the weights are sharded: saving streams them from the
shards (every rank takes part in each tensor's gather) and merges the LoRA adapter tensor by
tensor, so that path has its own test.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from kubetune_trainer.contract import Outcome
from kubetune_trainer.peft_models import load_adapter
from kubetune_trainer.storage import MANIFEST_NAME
from kubetune_trainer.tiny_model import TinyModel

from .local_runs import (
    STAGE_LINES,
    chat_spec,
    fsdp_catalog,
    kubetune_run,
    model_card_lineage,
    write_chat_data,
    write_manifest,
)


def test_two_ranks_train_and_only_rank_0_reports_and_writes(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    data = write_chat_data(tmp_path / "data")
    models = tmp_path / "models"
    manifest = write_manifest(
        tmp_path / "job.yaml",
        name="tiny-ddp",
        spec=chat_spec(tiny_llama.repo_id, data, output={"uri": str(models / "ddp-chat")}),
    )

    run = kubetune_run(
        manifest,
        workdir=tmp_path / "work",
        hf_home=tiny_hf_home,
        environ=offline_env,
        extra=("--nproc-per-node", "2"),
        in_process=False,
    )

    assert run.returncode == 0, run.output
    assert "torchrun --standalone --nproc-per-node=2 -m kubetune_trainer --config" in run.output
    assert run.stage_lines() == STAGE_LINES
    assert run.result.outcome is Outcome.SUCCEEDED
    lineage = model_card_lineage(models / "ddp-chat")
    assert lineage["metrics"]["eval_loss"] < 0.9 * lineage["metrics"]["eval_loss_before"]
    assert "worldSize: 2" in (models / "ddp-chat" / "README.md").read_text()
    # One destination, complete, and no second copy or staging leftovers from another rank.
    assert sorted(p.name for p in models.iterdir()) == ["ddp-chat"]
    assert (models / "ddp-chat" / MANIFEST_NAME).is_file()
    assert sorted(p.name for p in (tmp_path / "work" / "output").iterdir()) == ["tiny-llama-chat"]
    AutoModelForCausalLM.from_pretrained(models / "ddp-chat")


def test_under_fsdp_the_streamed_adapter_and_merged_model_are_saved_and_agree(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    catalog = fsdp_catalog(tmp_path / "catalog")
    data = write_chat_data(tmp_path / "data", train=16, validation=4)
    spec = chat_spec(
        tiny_llama.repo_id,
        data,
        lora={"enabled": True, "r": 8, "alpha": 16, "merge": True},
        output={"uri": str(tmp_path / "models" / "fsdp-lora")},
    )
    spec["hyperparameters"] |= {"nEpochs": 1, "learningRate": 1e-2}
    manifest = write_manifest(tmp_path / "job.yaml", name="tiny-fsdp", spec=spec)

    run = kubetune_run(
        manifest,
        workdir=tmp_path / "work",
        hf_home=tiny_hf_home,
        environ=offline_env,
        extra=("--nproc-per-node", "2", "--catalog", str(catalog)),
        in_process=False,
    )

    assert run.returncode == 0, run.output
    # Both ranks' logs, LoRA wrap, FSDP save and verification included: no FutureWarning from our code.
    assert "FutureWarning" not in run.output, run.output
    model_dir = tmp_path / "models" / "fsdp-lora"
    card = (model_dir / "README.md").read_text()
    assert "strategy: fsdp" in card
    assert "worldSize: 2" in card
    merged = AutoModelForCausalLM.from_pretrained(model_dir)
    # PeftModel.from_pretrained, as a user loads an adapter (less peft 0.21's own FutureWarning).
    adapted = load_adapter(AutoModelForCausalLM.from_pretrained(tiny_llama.snapshot_path), model_dir / "adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny_llama.snapshot_path)
    tokens = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        merged_logits, adapted_logits, base_logits = merged(tokens).logits, adapted(tokens).logits, base(tokens).logits
    assert torch.allclose(merged_logits, adapted_logits, atol=1e-4)
    assert not torch.allclose(adapted_logits, base_logits, atol=1e-4), "the trained adapter must change the model"
