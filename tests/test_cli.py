"""The `kubetune` command as a user runs it: templates list/recommend, validate, crds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLES_DIR, REPO

KUBETUNE = Path(sys.executable).parent / "kubetune"


def kubetune(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KUBETUNE), *args], cwd=cwd, capture_output=True, text=True, check=False)


def test_the_console_script_is_installed_and_lists_its_commands() -> None:
    done = kubetune("--help")
    assert done.returncode == 0
    for command in ("crds", "templates", "validate"):
        assert command in done.stdout


def test_version() -> None:
    done = kubetune("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == "kubetune 0.1.0"


def test_templates_list_prints_a_table_of_the_catalog() -> None:
    done = kubetune("templates", "list")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:5] == ["NAME", "ALIASES", "FAMILY", "PARAMS", "MAX-SEQ"]
    assert len(rows) >= 12
    llama2 = next(row for row in rows if row.startswith("llama-2-7b-chat "))
    assert llama2.split()[1:5] == ["togethercomputer/llama-2-7b-chat", "llama", "6.7B", "4096"]


def test_templates_list_json() -> None:
    done = kubetune("templates", "list", "--json")
    templates = json.loads(done.stdout)
    assert {t["metadata"]["name"] for t in templates} >= {"llama-2-7b-chat", "qwen3-4b", "gemma-3-4b-it"}


def test_recommend_json_has_template_reasons_and_warnings() -> None:
    done = kubetune(
        "templates", "recommend", "--model-type", "llama", "--parameters", "135000000", "--max-positions", "8192",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    advice = json.loads(done.stdout)
    assert set(advice) == {"template", "reasons", "warnings"}
    assert advice["template"] == "llama-2-7b-chat"
    assert advice["warnings"] == []
    assert len(advice["reasons"]) == 3


def test_recommend_explains_itself_in_words() -> None:
    done = kubetune("templates", "recommend", "--model-type", "falcon", "--parameters", "7.2B")
    assert done.returncode == 0, done.stderr
    first, *rest = done.stdout.splitlines()
    assert first.startswith("template: ")
    assert any(line.strip().startswith("warning NoArchitectureMatch:") for line in rest)


def test_recommend_prints_the_gpu_plan_a_135m_model_gets_one_gpu_of_eight() -> None:
    done = kubetune(
        "templates", "recommend", "--model-type", "llama", "--parameters", "135M", "--max-positions", "8192"
    )
    assert done.returncode == 0, done.stderr
    plans = [line for line in done.stdout.splitlines() if line.startswith("gpus (")]
    assert [line.split(":")[0] for line in plans] == ["gpus (LoRA r=64)", "gpus (full)"]
    assert all(": 1 GPU(s) on 1 node(s) planned (template maximum 8)" in line for line in plans)


def test_recommend_refuses_a_parameter_count_it_cannot_read() -> None:
    done = kubetune("templates", "recommend", "--model-type", "llama", "--parameters", "lots")
    assert done.returncode == 2
    assert "'lots' is not a parameter count such as 135000000, 135M or 6.7B" in done.stderr


def test_a_missing_catalog_directory_is_named(tmp_path: Path) -> None:
    done = kubetune("templates", "--catalog", str(tmp_path / "nowhere"), "list")
    assert done.returncode == 2
    assert "nowhere" in done.stderr


def test_validate_accepts_the_examples() -> None:
    done = kubetune("validate", *map(str, sorted(EXAMPLES_DIR.glob("*.yaml"))))
    assert done.returncode == 0, done.stderr
    assert "quickstart.yaml: valid FineTuneJob quickstart" in done.stdout


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        (
            "kind: FineTuneJob\napiVersion: kubetune.dev/v1alpha1\nmetadata: {name: j}\n"
            "spec: {model: qwen3-4b, trainingFile: ftp://x, hyperparameters: {learningRate: 0}}\n",
            [
                "bad.yaml: spec.trainingFile: must be pvc://claim/path",
                "(got 'ftp://x')",
                "bad.yaml: spec.hyperparameters.learningRate: must be greater than 0 (got 0)",
            ],
        ),
        ("kind: Pod\n", ["bad.yaml: kind: must be one of FineTuneJob, BaseModelTemplate (got 'Pod')"]),
    ],
)
def test_validate_names_every_bad_field(tmp_path: Path, manifest: str, expected: list[str]) -> None:
    (tmp_path / "bad.yaml").write_text(manifest)
    done = kubetune("validate", "bad.yaml", cwd=tmp_path)
    assert done.returncode == 1
    for words in expected:
        assert words in done.stderr


JOB_ON = (
    "kind: FineTuneJob\napiVersion: kubetune.dev/v1alpha1\nmetadata: {{name: j}}\n"
    "spec: {{model: {model}, trainingFile: pvc://d/train.jsonl, hyperparameters: {{batchSize: {batch}}}}}\n"
)


def test_validate_refuses_a_template_the_catalog_does_not_have(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB_ON.format(model="acme/nothing", batch=8))
    done = kubetune("validate", "job.yaml", cwd=tmp_path)
    assert done.returncode == 1
    first, second = done.stderr.splitlines()
    assert first == "job.yaml: spec.model: no template answers to 'acme/nothing'"
    assert second.startswith("job.yaml: spec.model: the templates are gemma-2-9b-it, ")
    assert "`kubetune templates list` shows them" in second


def test_validate_checks_values_against_the_named_templates_limits(tmp_path: Path) -> None:
    # An alias of qwen3-4b, whose LoRA batch sizes are bounded.
    (tmp_path / "job.yaml").write_text(JOB_ON.format(model="Qwen/Qwen3-4B", batch=100000))
    done = kubetune("validate", "job.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("job.yaml: spec.hyperparameters.batchSize: must lie within template qwen3-4b's")
    (tmp_path / "job.yaml").write_text(JOB_ON.format(model="Qwen/Qwen3-4B", batch=8))
    done = kubetune("validate", "job.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "job.yaml: valid FineTuneJob j (template qwen3-4b)"


def test_validate_checks_against_templates_given_in_a_directory_or_beside_the_job(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB_ON.format(model="my-org/smollm2-l4", batch=8))
    assert kubetune("validate", "job.yaml", cwd=tmp_path).returncode == 1
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "smollm2.yaml").write_text((EXAMPLES_DIR / "custom-template.yaml").read_text())
    done = kubetune("validate", "--templates", "mine", "job.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "job.yaml: valid FineTuneJob j (template smollm2-on-l4)" in done.stdout
    done = kubetune("validate", "job.yaml", str(EXAMPLES_DIR / "custom-template.yaml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "job.yaml: valid FineTuneJob j (template smollm2-on-l4)" in done.stdout
    done = kubetune("validate", "--templates", "mine", "job.yaml", cwd=tmp_path)
    (tmp_path / "job.yaml").write_text(JOB_ON.format(model="qwen3-4b", batch=8))
    done = kubetune("validate", "--templates", "mine", "job.yaml", cwd=tmp_path)
    assert done.returncode == 1, "--templates DIR replaces the shipped catalog"
    assert "the templates are smollm2-on-l4;" in done.stderr


def test_validate_of_an_auto_job_says_when_its_template_is_chosen() -> None:
    done = kubetune("validate", str(EXAMPLES_DIR / "quickstart.yaml"))
    assert done.returncode == 0, done.stderr
    assert "`kubetune check HuggingFaceTB/SmolLM2-135M-Instruct` shows which" in done.stdout
