"""`kubetune run JOB.yaml --local` fine-tunes tiny Llama, Qwen2 and Mistral models end to end.

Each run is the command a user types, in a subprocess with HF_HUB_OFFLINE=1 and the tiny models
in a real local HF cache. The test then checks what the user would: the five stages in order on
screen, the eval loss falling, the termination message, the model card's lineage, and that the
saved model loads with transformers (or peft) and generates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kubetune_trainer.contract import AttentionKernel, Outcome
from kubetune_trainer.peft_models import load_adapter
from kubetune_trainer.storage import MANIFEST_NAME
from kubetune_trainer.tiny_model import TinyModel

from .conftest import TINY_ADAPTER_REPO
from .local_runs import STAGE_LINES, chat_spec, kubetune_run, model_card_lineage, write_chat_data, write_manifest


def _generates(model_dir: Path) -> str:
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Zukafe fesulo"}], add_generation_prompt=True, tokenize=False
    )
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert isinstance(generated, torch.Tensor)
    assert generated.shape[1] > inputs["input_ids"].shape[1]
    return str(tokenizer.decode(generated[0, inputs["input_ids"].shape[1] :]))


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_a_tiny_model_fine_tunes_from_a_manifest(
    arch: str,
    tiny_models: dict[str, TinyModel],
    tiny_hf_home: Path,
    offline_env: dict[str, str],
    tmp_path: Path,
) -> None:
    tiny = tiny_models[arch]
    data = write_chat_data(tmp_path / "data")
    spec = chat_spec(tiny.repo_id, data, output={"uri": "pvc://models/team/chat"})
    manifest = write_manifest(tmp_path / "job.yaml", name=f"tiny-{arch}-chat", spec=spec)

    # The console script in a subprocess once (HF_HUB_OFFLINE=1 in its environment); in process
    # otherwise, through the same parser and function, to keep torch's import time out of each run.
    in_process = arch != "llama"
    run = kubetune_run(
        manifest, workdir=tmp_path / "work", hf_home=tiny_hf_home, environ=offline_env, in_process=in_process
    )

    assert run.returncode == 0, run.output
    assert run.stage_lines() == STAGE_LINES
    result = run.result
    assert result.outcome is Outcome.SUCCEEDED
    assert result.model is not None
    assert result.model.revision_sha == tiny.revision_sha
    assert result.output is not None
    assert result.output.name == f"tiny-{arch}-chat"
    # On a CPU the micro-batch budget stays one maxSeqLength; the plan and its figures are in the Result.
    assert result.memory_plan is not None
    assert result.memory_plan.limited_by == "cpu"
    assert result.memory_plan.activation_bytes_per_token > 0
    model_dir = tmp_path / "work" / "pvc" / "models" / "team" / "chat"
    assert (model_dir / MANIFEST_NAME).is_file()
    lineage = model_card_lineage(model_dir)
    assert lineage["revisionSha"] == tiny.revision_sha
    assert tiny.revision_sha in (model_dir / "README.md").read_text()
    metrics = lineage["metrics"]
    assert metrics["eval_loss"] < 0.9 * metrics["eval_loss_before"], metrics
    assert not [p.name for p in model_dir.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]
    _generates(model_dir)
    # Packed rows attended per example (the CPU's exact and fastest path), named on screen and in the Result;
    # a CPU has no MFU and no GPU memory to report.
    assert "attention: sdpa (per example), template asked auto" in run.output
    performance = result.performance
    assert performance is not None
    assert (performance.attention, performance.compiled, performance.device) == (AttentionKernel.SDPA, False, "cpu")
    assert performance.tokens_per_second is not None
    assert performance.tokens_per_second > 0
    assert (performance.mfu, performance.peak_gpu_memory_bytes) == (None, None)


# With FutureWarning an error: no LoRA path of ours (wrap, save, verification) puts one in the log.
@pytest.mark.filterwarnings("error::FutureWarning")
def test_a_lora_job_saves_an_adapter_and_a_merged_model_that_both_load(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    data = write_chat_data(tmp_path / "data")
    spec = chat_spec(
        tiny_llama.repo_id,
        data,
        lora={"enabled": True, "r": 8, "alpha": 16, "merge": True},
        output={"uri": str(tmp_path / "models" / "lora-chat")},
    )
    spec["hyperparameters"]["learningRate"] = 1e-2
    manifest = write_manifest(tmp_path / "job.yaml", name="tiny-lora", spec=spec)

    run = kubetune_run(manifest, workdir=tmp_path / "work", hf_home=tiny_hf_home, environ=offline_env)

    assert run.returncode == 0, run.output
    assert run.stage_lines() == STAGE_LINES
    model_dir = tmp_path / "models" / "lora-chat"
    metrics = model_card_lineage(model_dir)["metrics"]
    assert metrics["eval_loss"] < metrics["eval_loss_before"], metrics
    merged = AutoModelForCausalLM.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama.snapshot_path)
    adapted = load_adapter(base, model_dir / "adapter")  # PeftModel.from_pretrained, less peft's FutureWarning
    tokens = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        merged_logits = merged(tokens).logits
        adapted_logits = adapted(tokens).logits
    # The merged weights are the base plus the adapter: both give the same answers.
    assert torch.allclose(merged_logits, adapted_logits, atol=1e-4)
    assert tiny_llama.revision_sha in (model_dir / "README.md").read_text()
    _generates(model_dir)


def test_a_lora_adapter_repo_as_from_hf_model_is_merged_and_trained_in_full(
    tiny_adapter: TinyModel, tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    data = write_chat_data(tmp_path / "data")
    manifest = write_manifest(
        tmp_path / "job.yaml",
        name="tiny-from-adapter",
        spec=chat_spec(TINY_ADAPTER_REPO, data, output={"uri": str(tmp_path / "models" / "merged")}),
    )

    run = kubetune_run(manifest, workdir=tmp_path / "work", hf_home=tiny_hf_home, environ=offline_env)

    assert run.returncode == 0, run.output
    assert run.stage_lines() == STAGE_LINES
    assert "LoRA adapter merged into tiny-org/tiny-llama" in run.output
    model_dir = tmp_path / "models" / "merged"
    lineage = model_card_lineage(model_dir)
    assert lineage["mergedAdapter"] == {
        "adapterRepo": TINY_ADAPTER_REPO,
        "adapterSha": tiny_adapter.revision_sha,
        "baseRepo": tiny_llama.repo_id,
        "baseSha": tiny_llama.revision_sha,
    }
    assert lineage["metrics"]["eval_loss"] < 0.9 * lineage["metrics"]["eval_loss_before"]
    # A full model (no adapter files): the merged base was trained, every weight of it.
    assert not (model_dir / "adapter_config.json").exists()
    trained = AutoModelForCausalLM.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama.snapshot_path)
    changed = [
        name
        for (name, after), (_, before) in zip(trained.named_parameters(), base.named_parameters(), strict=True)
        if not torch.equal(after, before)
    ]
    assert any("mlp" in name for name in changed), "layers the adapter never touched must train too"
    _generates(model_dir)
