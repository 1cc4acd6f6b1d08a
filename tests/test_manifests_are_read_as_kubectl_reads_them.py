"""Manifest files are read as kubectl reads them, bounded, and refused in one line when they are not YAML.

One loader (`kubetune_operator.api.manifest_yaml`) serves `kubetune validate`, `kubetune run --local`
and the template catalog (`--templates`/`--catalog`); these tests drive it and the commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubetune_operator.api.manifest_yaml import MAX_BYTES, ManifestYamlError, load_documents, read_documents

KUBETUNE = Path(sys.executable).parent / "kubetune"

JOB = """\
apiVersion: kubetune.dev/v1alpha1
kind: FineTuneJob
metadata: {name: unquoted}
spec:
  model: llama-3.2-1b-instruct
  fromHfModel: tiny-org/absent
  trainingFile: pvc://datasets/chat/train.jsonl
  hyperparameters:
    learningRate: 1e-5
"""

# 8 levels of 9 aliases: 9^8 (43 million) strings once expanded, in a few hundred bytes.
ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefg", "bcdefgh", strict=True)
)


def kubetune(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(cwd / "hf")}
    return subprocess.run([str(KUBETUNE), *args], cwd=cwd, env=environ, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e-5", 1e-5),
        ("1E5", 1e5),
        ("2.5e+3", 2500.0),
        ("-3e-4", -3e-4),
        (".5", 0.5),
        ("1.", 1.0),
        ("1_000.5", 1000.5),
        ("5", 5),
        ("0x10", 16),
        ("'1e-5'", "1e-5"),
        ("1e", "1e"),
        ("true", True),
        ("~", None),
    ],
)
def test_scalars_resolve_as_yaml_1_2_and_kubectl_read_them(text: str, expected: object) -> None:
    (document,) = load_documents(f"value: {text}\n", source="job.yaml")
    assert document["value"] == expected
    assert type(document["value"]) is type(expected)


def test_an_alias_bomb_is_refused_at_once_without_expanding_it() -> None:
    assert len(ALIAS_BOMB.encode()) < 500
    started = time.process_time()
    with pytest.raises(ManifestYamlError, match=r"^bomb.yaml: over 100,000 values once its aliases are expanded"):
        load_documents(ALIAS_BOMB, source="bomb.yaml")
    # CPU time, not wall time: a loaded machine does not slow the counting down. Expanding took 51 s.
    assert time.process_time() - started < 5


def test_aliases_a_manifest_really_uses_are_read() -> None:
    (document,) = load_documents("base: &env {a: 1}\nother: *env\nmerged: {<<: *env, b: 2}\n", source="x.yaml")
    assert document == {"base": {"a": 1}, "other": {"a": 1}, "merged": {"a": 1, "b": 2}}


def test_nesting_past_the_depth_limit_is_refused_with_its_line() -> None:
    with pytest.raises(ManifestYamlError, match=r"^deep.yaml: nested more than 64 levels deep at line 1$"):
        load_documents("[" * 65 + "]" * 65, source="deep.yaml")
    assert load_documents("[" * 30 + "1" + "]" * 30, source="ok.yaml")


def test_a_file_over_the_api_servers_limit_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * MAX_BYTES + "\n")
    with pytest.raises(ManifestYamlError, match=r"big.yaml: larger than 3 MiB, the API server's limit$"):
        read_documents(big)


def test_a_binary_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    binary = tmp_path / "model.safetensors"
    binary.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\xff\xfe\x00")
    with pytest.raises(ManifestYamlError) as refused:
        read_documents(binary)
    assert str(refused.value) == f"{binary}: not a YAML file: byte 0xff at offset 9 is not UTF-8 text"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [1, 2\n", "x.yaml: not valid YAML: while parsing a flow sequence: expected ',' or ']'"),
        ("a: b: c\n", "x.yaml: not valid YAML: mapping values are not allowed here at line 1, column 5"),
        ("a: 1\n\x00\n", "x.yaml: not valid YAML: unacceptable character #x0000"),
    ],
)
def test_text_that_is_not_yaml_is_one_line(text: str, expected: str) -> None:
    with pytest.raises(ManifestYamlError) as refused:
        load_documents(text, source="x.yaml")
    assert str(refused.value).startswith(expected)
    assert "\n" not in str(refused.value)


def test_validate_reads_an_unquoted_learning_rate_as_kubectl_does(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB)
    done = kubetune("validate", "job.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "job.yaml: valid FineTuneJob unquoted (template llama-3.2-1b-instruct)"


def test_run_local_reads_an_unquoted_learning_rate_as_kubectl_does(tmp_path: Path) -> None:
    """The spec is accepted; the run stops later, at the model, which is not in the (empty) offline cache."""
    (tmp_path / "job.yaml").write_text(JOB)
    done = kubetune("run", "job.yaml", "--local", "--workdir", "run", cwd=tmp_path)
    assert "is not a valid FineTuneJob" not in done.stderr
    assert "learningRate" not in done.stderr
    assert "tiny-org/absent" in done.stderr


@pytest.mark.parametrize("command", [["validate", "bad.yaml"], ["run", "bad.yaml", "--local"]])
def test_the_commands_refuse_a_binary_file_in_one_line(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "bad.yaml").write_bytes(bytes(range(256)))
    done = kubetune(*command, cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip() == "bad.yaml: not a YAML file: byte 0x80 at offset 128 is not UTF-8 text"


def test_validate_refuses_an_alias_bomb_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(ALIAS_BOMB)
    done = kubetune("validate", "bomb.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("bomb.yaml: over 100,000 values once its aliases are expanded")
