"""`kubetune estimate JOB.yaml --data FILE`: GPU-hours from the data's tokens, the epochs and the template's
declared throughput; an unknown template, a template without a throughput or missing data: a clear message,
exit 2, nothing written."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import yaml

from kubetune_operator.cli import build_parser
from kubetune_operator.cli.estimate import estimate
from kubetune_operator.resolve.catalog import load_catalog

THROUGHPUT = 2500.0
RECORDS = [
    {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4, of course."}]},
    {"text": "A plain text record that is a little longer than the others, for the count."},
]


def _template() -> dict[str, Any]:
    base = next(t for t in load_catalog().templates if t.name == "llama-2-7b-chat").to_wire()
    base["metadata"] = {"name": "measured-llama"}
    base["spec"]["aliases"] = []
    base["spec"]["training"] = {**base["spec"].get("training", {}), "expectedTokensPerSecondPerGpu": THROUGHPUT}
    return base


def _job(model: str, training_file: str = "train.jsonl") -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "support-bot"},
        "spec": {"model": model, "trainingFile": training_file, "hyperparameters": {"nEpochs": 3}},
    }


def _run(tmp_path: Path, *documents: dict[str, Any], extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump_all(documents), encoding="utf-8")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    args = build_parser().parse_args(["estimate", str(manifest), "--data", str(data), *extra])
    out, err = io.StringIO(), io.StringIO()
    before = sorted(p.name for p in tmp_path.iterdir())
    code = estimate(args, environ={"HF_HOME": str(tmp_path / "empty-hf-home")}, stream=out, errors=err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing written"
    return code, out.getvalue(), err.getvalue()


def _approximate_tokens() -> int:
    strings = ["user", "What is 2+2?", "assistant", "4, of course.", RECORDS[1]["text"]]
    return sum(math.ceil(len(s) / 4) for s in strings)


def test_the_estimate_is_tokens_times_epochs_over_the_declared_throughput(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, _template(), _job("measured-llama"), extra=("-o", "json"))
    assert code == 0, err
    shown = json.loads(out)
    # The GPU planner's count: a LoRA job on a 7B model fits one of the template's eight GPUs.
    gpus = 1
    tokens = _approximate_tokens()
    assert shown["tokens"] == tokens
    assert shown["epochs"] == 3
    assert shown["gpus"] == gpus
    assert math.isclose(shown["hours"], tokens * 3 / (THROUGHPUT * gpus) / 3600)
    assert math.isclose(shown["gpuHours"], tokens * 3 / THROUGHPUT / 3600)
    assert shown["basis"].startswith("approximate: 1 token per 4 characters")
    assert shown["template"] == "measured-llama"


def test_the_text_output_says_what_the_tokens_were_counted_with(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, _template(), _job("measured-llama"))
    assert code == 0
    assert "GPU-hours" in out
    assert "approximate" in out
    assert "measured-llama" in out


def test_an_unknown_template_is_refused_naming_the_job(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, _job("no-such-template"))
    assert code == 2
    assert out == ""
    assert "support-bot" in err
    assert "no-such-template" in err


def test_a_template_without_a_throughput_names_the_field_to_set(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, _job("togethercomputer/llama-2-7b-chat"))
    assert code == 2
    assert out == ""
    assert "spec.training.expectedTokensPerSecondPerGpu" in err
    assert "llama-2-7b-chat" in err


def test_a_remote_training_file_without_data_asks_for_a_local_copy(tmp_path: Path) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump_all([_template(), _job("measured-llama", "s3://data/train.jsonl")]))
    args = build_parser().parse_args(["estimate", str(manifest)])
    err = io.StringIO()
    code = estimate(args, environ={}, stream=io.StringIO(), errors=err)
    assert code == 2
    assert "--data FILE" in err.getvalue()


def test_pod_additions_do_not_stand_in_the_way_of_an_estimate(tmp_path: Path) -> None:
    """The operator checks spec.pod against its allow-lists; the estimate, which they do not change, does not."""
    job = _job("measured-llama")
    job["spec"]["pod"] = {"env": [{"name": "NCCL_DEBUG", "value": "INFO"}]}
    code, out, err = _run(tmp_path, _template(), job)
    assert code == 0, err
    assert "GPU-hours" in out
