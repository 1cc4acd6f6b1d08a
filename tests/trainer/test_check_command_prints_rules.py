"""`kubetune check ORG/NAME`: every rule PASS or FAIL, the figures, and the template, from the local cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kubetune_operator.cli import main
from kubetune_trainer.compat import human_count
from kubetune_trainer.tiny_model import Arch, write_tiny_model

from .conftest import RefusedRepos
from .refused_models import REFUSED, RefusedCase

RULES = ("config", "remote-code", "causal-lm", "parameters", "safetensors", "transformers")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("HF_TOKEN", "HF_HUB_CACHE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["check", *args])
    return code, capsys.readouterr().out


def _check_tiny(capsys: pytest.CaptureFixture[str], tmp_path: Path, arch: Arch) -> tuple[str, str]:
    """`kubetune check` on a tiny model of `arch` in a cache of its own: everything printed, and the shape line."""
    home, repo = tmp_path / "hf", f"tiny-org/tiny-{arch.replace('_', '-')}"
    write_tiny_model(arch=arch, repo_id=repo, hf_home=home)
    code, out = _check(capsys, repo, "--hf-home", str(home))
    assert code == 0, out
    return out, next(line for line in out.splitlines() if line.startswith("shape: "))


@pytest.mark.parametrize(
    ("arch", "template", "parameters"),
    [
        ("llama", "llama-3.2-1b-instruct", "172K (172,352)"),
        ("qwen2", "qwen2.5-7b-instruct", "173K (172,608)"),
        ("mistral", "mistral-7b-instruct-v0.1", "172K (172,352)"),
    ],
)
def test_a_tiny_model_passes_every_rule_and_gets_a_template(
    capsys: pytest.CaptureFixture[str], tiny_hf_home: Path, arch: str, template: str, parameters: str
) -> None:
    code, out = _check(capsys, f"tiny-org/tiny-{arch}", "--hf-home", str(tiny_hf_home))
    assert code == 0, out
    for rule in RULES:
        assert f"PASS  {rule} " in out
    assert "FAIL" not in out
    assert f"parameters: {parameters}" in out
    assert "max positions: 1024" in out
    assert "shape: 2 layers of 64 (MLP 128), 4 heads of 16 (2 key/value), vocabulary 768" in out
    assert f"recommended template: {template}" in out
    assert f"template(s) accept model_type {arch}" in out
    assert "warning SequenceLengthCapped" in out
    # A tiny model is planned onto one GPU of the template's, whatever its maximum.
    assert "gpus (LoRA r=" in out
    assert all(" 1 GPU(s) on 1 node(s) planned" in line for line in out.splitlines() if line.startswith("gpus ("))
    assert out.rstrip().endswith("result: every rule passed")


@pytest.mark.parametrize("case", REFUSED, ids=[c.name for c in REFUSED])
def test_a_refused_model_prints_the_failed_rule_and_exits_1(
    capsys: pytest.CaptureFixture[str], refused_repos: RefusedRepos, case: RefusedCase
) -> None:
    code, out = _check(capsys, case.repo, "--hf-home", str(refused_repos.hf_home))
    assert code == 1, out
    failed = [line for line in out.splitlines() if line.lstrip().startswith("FAIL")]
    assert len(failed) == 1, out
    assert f"{case.reason}: " in out, "the reason code and the fix follow the failed rule"
    assert case.spec_field in out
    assert out.rstrip().endswith("result: 1 rule(s) failed")


def test_a_too_large_model_still_shows_its_size(
    capsys: pytest.CaptureFixture[str], refused_repos: RefusedRepos
) -> None:
    code, out = _check(capsys, "bad-org/llama-405b", "--hf-home", str(refused_repos.hf_home))
    assert code == 1
    assert "FAIL  parameters" in out
    assert "parameters: 406B (405,853,388,800)" in out
    assert "max positions: 131072" in out


@pytest.mark.parametrize(
    ("repo", "revision", "reason"),
    [("tiny-org/absent", "main", "ModelRepoNotFound"), ("tiny-org/tiny-llama", "v9", "RevisionNotFound")],
)
def test_a_missing_repo_or_revision_exits_1(
    capsys: pytest.CaptureFixture[str], tiny_hf_home: Path, repo: str, revision: str, reason: str
) -> None:
    code, out = _check(capsys, repo, "--revision", revision, "--hf-home", str(tiny_hf_home))
    assert code == 1
    assert "FAIL  repo" in out
    assert f"{reason}: " in out


def test_a_named_template_shows_how_the_model_differs(capsys: pytest.CaptureFixture[str], tiny_hf_home: Path) -> None:
    code, out = _check(
        capsys, "tiny-org/tiny-qwen2", "--template", "togethercomputer/llama-2-7b-chat", "--hf-home", str(tiny_hf_home)
    )
    assert code == 0, "differences from the template are warnings"
    assert "template: llama-2-7b-chat" in out
    for reason in ("TemplateFamilyMismatch", "TemplateSizeMismatch", "SequenceLengthCapped"):
        assert f"warning {reason}" in out


def test_an_unknown_template_exits_2(capsys: pytest.CaptureFixture[str], tiny_hf_home: Path) -> None:
    code = main(["check", "tiny-org/tiny-llama", "--template", "no-such-template", "--hf-home", str(tiny_hf_home)])
    assert code == 2
    assert "no template 'no-such-template'" in capsys.readouterr().err


def test_an_adapter_repo_is_checked_through_its_base(
    capsys: pytest.CaptureFixture[str], tiny_hf_home: Path, tiny_adapter: object
) -> None:
    code, out = _check(capsys, "tiny-org/tiny-llama-lora", "--hf-home", str(tiny_hf_home))
    assert code == 0, out
    assert "LoRA adapter of tiny-org/tiny-llama@" in out
    for rule in ("adapter", "adapter-base", "adapter-safetensors", *RULES):
        assert f"PASS  {rule} " in out


def test_the_cli_starts_without_the_ml_stack() -> None:
    """The operator image has no torch: `kubetune` must build its parser without importing it."""
    probe = (
        "import sys; from kubetune_operator.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'huggingface_hub') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]"


def test_a_mixture_of_experts_shows_its_experts_and_active_parameters_and_gets_the_mixtral_template(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out, shape = _check_tiny(capsys, tmp_path, "mixtral")
    # 4 experts of 3 x 64 x 128 a layer, 2 of them idle a token, over 2 layers: 98,304 of the parameters idle.
    parameters = int(
        next(line for line in out.splitlines() if line.startswith("parameters: ")).split("(")[1][:-1].replace(",", "")
    )
    assert shape.endswith(f"4 experts, 2 a token ({human_count(parameters - 2 * 2 * 3 * 64 * 128)} active)")
    assert "recommended template: mixtral-8x7b-instruct-v0.1" in out


def test_a_deepseek_v3_shows_its_dense_layer_and_the_unchecked_memory_plan(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out, shape = _check_tiny(capsys, tmp_path, "deepseek_v3")
    assert "4 experts, 2 a token" in shape
    assert shape.endswith("; 1 of the layers dense (MLP 128)")
    assert "MemoryPlanUnmeasured" in out
