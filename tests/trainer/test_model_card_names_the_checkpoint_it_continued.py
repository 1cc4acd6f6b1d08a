"""A fromCheckpoint job's model card names its lineage: the job (and its uid) and the step it continued."""

from __future__ import annotations

import json
from pathlib import Path

from kubetune_trainer.tiny_model import TinyModel

from .training_jobs import model_card, trainer_config

SOURCE = "base-chat@5d1e0c9a-7b7f-4c55-8a0e-2b9f0f6c1d3e"


def _card(tiny_llama: TinyModel, tmp_path: Path, *, from_checkpoint: str, resume_from: str, loaded: int) -> str:
    config = trainer_config(tiny_llama, work_dir=tmp_path, training_file=tmp_path / "unused.jsonl")
    runtime = config.runtime.model_copy(update={"from_checkpoint": from_checkpoint, "resume_from": resume_from})
    return model_card(config.model_copy(update={"runtime": runtime}), model=tiny_llama, resumed_from_step=loaded)


def _machine(card: str) -> dict[str, object]:
    block = card.split("## Lineage (machine-readable)", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    lineage: dict[str, object] = json.loads(block)
    return lineage


def test_the_card_names_the_source_job_uid_and_the_step_loaded(tiny_llama: TinyModel, tmp_path: Path) -> None:
    card = _card(tiny_llama, tmp_path, from_checkpoint=SOURCE, resume_from=SOURCE, loaded=721)
    assert _machine(card)["fromCheckpoint"] == {
        "job": "base-chat",
        "uid": "5d1e0c9a-7b7f-4c55-8a0e-2b9f0f6c1d3e",
        "step": 721,
    }
    assert "| continued from | job `base-chat`, uid `5d1e0c9a-7b7f-4c55-8a0e-2b9f0f6c1d3e`, step 721" in card


def test_a_retry_resuming_its_own_checkpoint_does_not_take_its_step_for_the_sources(
    tiny_llama: TinyModel, tmp_path: Path
) -> None:
    card = _card(tiny_llama, tmp_path, from_checkpoint=f"{SOURCE}:40", resume_from="follow-up:12", loaded=12)
    assert _machine(card)["fromCheckpoint"] == {"job": "base-chat", "uid": SOURCE.split("@")[1], "step": 40}
