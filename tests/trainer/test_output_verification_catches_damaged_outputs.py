"""Saving reloads its output from disk and compares it with the trained model before anything is uploaded.

A real tiny Llama is trained a few steps in-process and saved by the real Saving stage. An
intact output passes (the reloaded loss equals the trained loss; the difference is in the
model card). An output damaged between writing and verifying, as a failing disk or a saving
bug would leave it, fails with ValueError / OutputVerificationFailed and a message saying what
differed: weights that are not the trained ones, a weights file that does not load, a tokenizer
that encodes differently, a chat template that renders differently. LoRA outputs are checked
as users load them: the merged model, or the adapter on its base.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from kubetune_trainer.classify import classify
from kubetune_trainer.context import RunContext
from kubetune_trainer.contract import ErrorClass, LoraConfig, Stage
from kubetune_trainer.errors import CheckpointInvalid
from kubetune_trainer.handoffs import DownloadResult, InitializedRun, SavedModel, TrainingOutcome
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.stages import initialize, save, train
from kubetune_trainer.tiny_model import TinyModel

from .training_jobs import chat_lines, chat_training_context

METRIC = "output_verification_loss_difference"


@dataclass(frozen=True)
class _Trained:
    """A run trained in-process, ready for its Saving stage."""

    ctx: RunContext
    reporter: RecordingReporter
    downloaded: DownloadResult
    initialized: InitializedRun
    trained: TrainingOutcome

    def save(self, damage: Callable[[Path], None] | None = None) -> SavedModel:
        saved = save.run(self.ctx, self.downloaded, self.initialized, self.trained, before_verify=damage)
        assert saved is not None  # rank 0 saves
        return saved


def _card_metric(saved: SavedModel) -> float:
    """The output verification's loss difference, as the model card's machine-readable lineage states it."""
    card = (saved.folder / "README.md").read_text(encoding="utf-8")
    block = card.split("## Lineage (machine-readable)", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    value: float = json.loads(block)["metrics"][METRIC]
    return value


def _trained(tiny_llama: TinyModel, tmp_path: Path, *, lora: LoraConfig | None = None) -> _Trained:
    tmp_path.mkdir(parents=True, exist_ok=True)
    ctx, reporter, downloaded = chat_training_context(
        tiny_llama,
        work_dir=tmp_path,
        lines=chat_lines(16, seed=3),
        held_out=chat_lines(4, seed=9),
        lora=lora,
        batch_size=4,
        learning_rate=2e-2 if lora else 3e-3,
        n_evals=0,
    )
    initialized = initialize.run(ctx, downloaded)
    trained = train.run(ctx, downloaded, initialized)
    return _Trained(ctx, reporter, downloaded, initialized, trained)


def _verification_failure(run: _Trained, damage: Callable[[Path], None]) -> str:
    with pytest.raises(CheckpointInvalid) as caught:  # Saving hands Upload nothing to send
        run.save(damage)
    error = classify(caught.value, stage=Stage.SAVING, job_uid="uid-1234")
    assert (error.error_class, error.reason, error.retryable) == (
        ErrorClass.VALUE_ERROR,
        "OutputVerificationFailed",
        False,
    )
    assert error.hint is not None
    assert "runtime.workDir" in error.hint
    assert "Nothing was uploaded" in error.message
    return error.message


def test_an_intact_full_model_is_verified_and_the_difference_is_in_the_card(
    tiny_llama: TinyModel, tmp_path: Path
) -> None:
    run = _trained(tiny_llama, tmp_path)

    saved = run.save()

    assert saved.folder.name == "tiny-out"
    (note,) = [n for n in run.reporter.notes if n.startswith("verified tiny-out")]
    assert "on 4 example(s)" in note
    assert "tokenizer and chat template match" in note
    # fp32 safetensors reload to the same bits, and the CPU computes the same loss.
    assert _card_metric(saved) < 1e-6
    assert f"| {METRIC} |" in (saved.folder / "README.md").read_text(encoding="utf-8")


def test_weights_that_are_not_the_trained_ones_fail(tiny_llama: TinyModel, tmp_path: Path) -> None:
    run = _trained(tiny_llama, tmp_path)
    base_weights = tiny_llama.snapshot_path / "model.safetensors"

    def save_the_untrained_weights(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(base_weights.read_bytes())

    message = _verification_failure(run, save_the_untrained_weights)

    assert "the model reloaded from tiny-out has loss" in message
    assert "the saved weights are not the trained ones" in message


def test_one_damaged_tensor_fails(tiny_llama: TinyModel, tmp_path: Path) -> None:
    run = _trained(tiny_llama, tmp_path)

    def zero_one_layer(folder: Path) -> None:
        weights = load_file(str(folder / "model.safetensors"))
        weights["model.layers.1.mlp.down_proj.weight"] = torch.zeros_like(
            weights["model.layers.1.mlp.down_proj.weight"]
        )
        save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})

    assert "the saved weights are not the trained ones" in _verification_failure(run, zero_one_layer)


def test_a_truncated_weights_file_fails(tiny_llama: TinyModel, tmp_path: Path) -> None:
    run = _trained(tiny_llama, tmp_path)

    def truncate(folder: Path) -> None:
        path = folder / "model.safetensors"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    message = _verification_failure(run, truncate)

    assert "the saved output tiny-out cannot be loaded back" in message


def test_a_tokenizer_that_encodes_differently_fails(tiny_llama: TinyModel, tmp_path: Path) -> None:
    run = _trained(tiny_llama, tmp_path)

    def lowercase_everything(folder: Path) -> None:
        path = folder / "tokenizer.json"
        spec = json.loads(path.read_text(encoding="utf-8"))
        spec["normalizer"] = {"type": "Lowercase"}
        path.write_text(json.dumps(spec), encoding="utf-8")

    message = _verification_failure(run, lowercase_everything)

    assert "the saved tokenizer encodes the sample text differently from the trained one" in message


def test_a_chat_template_that_renders_differently_fails(tiny_llama: TinyModel, tmp_path: Path) -> None:
    run = _trained(tiny_llama, tmp_path)

    def another_template(folder: Path) -> None:
        (folder / "chat_template.jinja").write_text(
            "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}", encoding="utf-8"
        )

    message = _verification_failure(run, another_template)

    assert "the saved chat template renders a conversation differently" in message


def test_a_lora_adapter_is_verified_on_its_base_and_a_blank_adapter_fails(
    tiny_llama: TinyModel, tmp_path: Path
) -> None:
    lora = LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=False)
    intact = _trained(tiny_llama, tmp_path / "intact", lora=lora)
    saved = intact.save()
    assert [n for n in intact.reporter.notes if n.startswith("verified tiny-out")]
    assert _card_metric(saved) < 1e-5

    def blank_adapter(folder: Path) -> None:
        # lora_B all zeros: the adapter changes nothing, the base model alone is what loads.
        weights = load_file(str(folder / "adapter_model.safetensors"))
        blank = {name: torch.zeros_like(t) if "lora_B" in name else t for name, t in weights.items()}
        save_file(blank, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})

    damaged = _trained(tiny_llama, tmp_path / "damaged", lora=lora)
    assert "the saved weights are not the trained ones" in _verification_failure(damaged, blank_adapter)


def test_a_merged_lora_model_is_verified_against_the_model_as_trained(tiny_llama: TinyModel, tmp_path: Path) -> None:
    lora = LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=True)
    run = _trained(tiny_llama, tmp_path, lora=lora)

    saved = run.save()

    assert (saved.folder / "model.safetensors").is_file()
    assert [n for n in run.reporter.notes if n.startswith("verified tiny-out")]
    # The reference is the adapter applied at run time; folding it into the weights moves the loss by float noise.
    assert _card_metric(saved) < 1e-4
