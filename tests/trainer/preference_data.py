"""A learnable preference set over the tiny models' word chain, for DPO runs.

The user says the first half of a sentence; the preferred output continues it along the chain the
tiny tokenizers were trained on, the non-preferred one is the same words reversed. A model can
learn to prefer the first from a few steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune_trainer.tiny_model import markov_sentences


def preference_line(sentence: str) -> dict[str, Any]:
    words = sentence.split()
    half = max(1, len(words) // 2)
    rest = words[half:] if len(words) - half > 1 else [*words[half:], words[0]]
    return {
        "input": {"messages": [{"role": "user", "content": " ".join(words[:half])}]},
        "preferred_output": [{"role": "assistant", "content": " ".join(rest)}],
        "non_preferred_output": [{"role": "assistant", "content": " ".join(reversed(rest))}],
    }


def write_preference_data(directory: Path, *, train: int = 48, validation: int = 8) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    sentences = [s for s in markov_sentences(3 * (train + validation), seed=3) if len(s.split()) >= 4]
    lines = [preference_line(s) for s in sentences[: train + validation]]
    lines = [line for line in lines if line["preferred_output"] != line["non_preferred_output"]]
    train_file, validation_file = directory / "pairs.jsonl", directory / "pairs-valid.jsonl"
    train_file.write_text("".join(json.dumps(line) + "\n" for line in lines[:train]))
    validation_file.write_text("".join(json.dumps(line) + "\n" for line in lines[train:]))
    return train_file, validation_file
