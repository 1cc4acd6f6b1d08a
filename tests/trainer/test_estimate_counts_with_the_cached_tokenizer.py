"""`kubetune estimate` counts tokens with the model's own tokenizer when it is in the local cache, and says so."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import yaml
from transformers import AutoTokenizer

from kubetune_operator.cli import build_parser
from kubetune_operator.cli.estimate import estimate
from kubetune_operator.resolve.catalog import load_catalog
from kubetune_trainer.tiny_model import TinyModel

THROUGHPUT = 1000.0
RECORDS = [
    {"messages": [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "Seven."}]},
    {"prompt": "Translate 'chat' to English:", "completion": " cat"},
]


def _documents(repo: str) -> list[dict[str, Any]]:
    template = next(t for t in load_catalog().templates if t.name == "qwen2.5-7b-instruct").to_wire()
    template["metadata"] = {"name": "tiny-measured"}
    template["spec"].update(aliases=[], hfModel=repo)
    template["spec"]["training"] = {**template["spec"].get("training", {}), "expectedTokensPerSecondPerGpu": THROUGHPUT}
    job = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "tiny-job"},
        "spec": {"model": "tiny-measured", "trainingFile": "train.jsonl", "hyperparameters": {"nEpochs": 2}},
    }
    return [template, job]


def test_tokens_are_counted_with_the_cached_tokenizer(
    tiny_qwen2: TinyModel, offline_env: dict[str, str], tmp_path: Path
) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump_all(_documents(tiny_qwen2.repo_id)), encoding="utf-8")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    args = build_parser().parse_args(["estimate", str(manifest), "--data", str(data), "-o", "json"])
    out, err = io.StringIO(), io.StringIO()

    code = estimate(args, environ=offline_env, stream=out, errors=err)

    assert code == 0, err.getvalue()
    shown = json.loads(out.getvalue())
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2.snapshot_path)
    strings = ["user", "Name a prime.", "assistant", "Seven.", "Translate 'chat' to English:", " cat"]
    expected = sum(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in strings)
    assert shown["tokens"] == expected
    assert shown["basis"].startswith(f"tokenizer of {tiny_qwen2.repo_id}@main")
    assert math.isclose(shown["gpuHours"], expected * 2 / THROUGHPUT / 3600)
