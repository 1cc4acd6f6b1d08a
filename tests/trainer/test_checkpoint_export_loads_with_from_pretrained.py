"""A training checkpoint exported by `checkpoint_export` (what `kubetune jobs download --checkpoint-step`
writes) is a folder `from_pretrained` loads, tokenizer and chat template included: full weights, a
LoRA adapter merged in, or the adapter alone over its named base."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.checkpoint_export import export_checkpoint, step_folder_name
from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import LoraConfig, Outcome
from kubetune_trainer.peft_models import load_adapter
from kubetune_trainer.pipeline import run_pipeline
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.tiny_model import TinyModel

from .preemption_runs import resumable_job

LORA = LoraConfig(r=8, alpha=16, dropout=0.0, target_modules=["all-linear"], merge=True)


def _checkpoints_of_a_run(
    model: TinyModel, hf_home: Path, env: dict[str, str], tmp_path: Path, lora: LoraConfig | None
) -> Path:
    checkpoints = tmp_path / "checkpoints"
    config = resumable_job(model, hf_home=hf_home, work_dir=tmp_path / "work", checkpoints=checkpoints, lora=lora)
    ticks = iter(range(10_000))
    result = run_pipeline(
        config,
        environ=env,
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=next(ticks)),
        reporter=RecordingReporter(),
        dist=DistInfo(),
    )
    assert result.outcome is Outcome.SUCCEEDED, result.error
    return checkpoints / "tiny" / "uid-1234"  # the job's own directory is its uid's


def _generate(folder: Path, *, adapter_base: Path | None = None) -> tuple[int, int]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model: Any
    if adapter_base is None:
        model = AutoModelForCausalLM.from_pretrained(folder)
    else:
        # PeftModel.from_pretrained, as a user loads an adapter (less peft 0.21's own FutureWarning).
        model = load_adapter(AutoModelForCausalLM.from_pretrained(adapter_base), folder)
    prompt: Any = tokenizer.apply_chat_template(
        [{"role": "user", "content": "the quick"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    generated: Any = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    return int(prompt["input_ids"].shape[1]), int(generated.shape[1])


# A run, an export and the loads with FutureWarning an error: none comes from our code (peft's is dropped).
@pytest.mark.filterwarnings("error::FutureWarning")
@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_an_exported_step_loads_and_generates(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path, lora: LoraConfig | None
) -> None:
    job_dir = _checkpoints_of_a_run(tiny_llama, tiny_hf_home, offline_env, tmp_path, lora)
    step = min(int(p.name.split("-")[1]) for p in job_dir.iterdir() if p.name.startswith("step-"))
    checkpoint = job_dir / step_folder_name(step)
    assert checkpoint.is_dir()

    merged = tmp_path / "merged"
    export_checkpoint(
        checkpoint,
        merged,
        base_snapshot=tiny_llama.snapshot_path,
        base_repo=tiny_llama.repo_id,
        base_revision="abc123",
        lora=lora,
    )
    files = {p.name for p in merged.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= files
    assert "adapter_config.json" not in files
    assert "chat_template" in (merged / "tokenizer_config.json").read_text() or "chat_template.jinja" in files
    prompt, generated = _generate(merged)
    assert generated > prompt

    if lora is None:
        return
    adapter = tmp_path / "adapter"
    export_checkpoint(
        checkpoint,
        adapter,
        base_snapshot=tiny_llama.snapshot_path,
        base_repo=tiny_llama.repo_id,
        base_revision="abc123",
        lora=lora,
        merged=False,
    )
    assert "adapter_config.json" in {p.name for p in adapter.iterdir()}
    # The adapter names its base as a user loads it, by repo and commit, not by this machine's snapshot path.
    adapter_config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    assert (adapter_config["base_model_name_or_path"], adapter_config["revision"]) == (tiny_llama.repo_id, "abc123")
    prompt, generated = _generate(adapter, adapter_base=tiny_llama.snapshot_path)
    assert generated > prompt
