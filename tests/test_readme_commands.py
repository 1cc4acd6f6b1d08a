"""The README's `kubetune` commands run, and print what the README shows."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubetune_operator.api.errors import validate
from kubetune_operator.api.resources import FineTuneJob

from .conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
KUBETUNE = Path(sys.executable).parent / "kubetune"

# The file the README's `kubetune validate job.yaml` example checks.
BAD_JOB = """\
apiVersion: kubetune.dev/v1alpha1
kind: FineTuneJob
metadata: {name: job}
spec:
  model: qwen3-4b
  trainingFile: ftp://x
  learningRate: 0.0001
"""


def console_blocks() -> list[list[tuple[str, list[str]]]]:
    """Each console block's `$ kubetune ...` commands, in order, with the lines the README shows after each."""
    blocks = []
    for block in re.findall(r"```console\n(.*?)```", README, flags=re.S):
        found: list[tuple[str, list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found:
                found[-1][1].append(line)
        commands = [(c, s) for c, s in found if c.startswith("kubetune ")]
        # A block that starts a background server (`kubetune sandbox ... &`) is a session, run
        # whole by tests/e2e/test_readme_quickstart.py.
        if commands and not any(c.endswith(" &") for c, _ in found):
            blocks.append(commands)
    return blocks


BLOCKS = console_blocks()


def test_the_readme_shows_kubetune_commands() -> None:
    assert sum(len(b) for b in BLOCKS) >= 8


@pytest.mark.parametrize("block", BLOCKS, ids=[" && ".join(c for c, _ in b) for b in BLOCKS])
def test_readme_commands_print_what_the_readme_shows(tmp_path: Path, block: list[tuple[str, list[str]]]) -> None:
    """A block's commands run in order in one folder holding the repo's examples, as a user types them."""
    (tmp_path / "job.yaml").write_text(BAD_JOB)
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    # The Hub is unreachable here; the commands must work from the local cache without being told.
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    for command, shown in block:
        argv = shlex.split(command)
        done = subprocess.run(
            [str(KUBETUNE), *argv[1:]], cwd=tmp_path, env=environ, capture_output=True, text=True, check=False
        )
        printed = (done.stdout + done.stderr).splitlines()
        assert done.returncode == (1 if argv[1] == "validate" else 0), done.stdout + done.stderr
        for line in shown:
            if line.endswith("..."):
                assert any(p.startswith(line[:-3]) for p in printed), (command, line, printed)
            else:
                assert line in printed, (command, line, printed)


def test_the_quick_start_model_is_readable_by_every_user_and_loads(tmp_path: Path) -> None:
    """What the README's local run leaves: a folder any pod can read, which transformers loads and generates from."""
    (quick_start,) = [b for b in BLOCKS if any(c.startswith("kubetune run ") for c, _ in b)]
    test_readme_commands_print_what_the_readme_shows(tmp_path, quick_start)
    model_dir = tmp_path / ".run" / "pvc" / "models" / "tiny-local"
    modes = {p.name: p.stat().st_mode & 0o777 for p in model_dir.iterdir()}
    assert all(mode & 0o444 == 0o444 for mode in modes.values()), modes
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Rita vesuho"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    generated = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]


def test_the_readme_manifest_is_a_valid_finetunejob() -> None:
    (manifest,) = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
    job = validate(FineTuneJob, yaml.safe_load(manifest), kind="FineTuneJob")
    assert job.spec.model == "auto"
