"""A Together fine-tuning script runs against kubetune with only its import and client line changed.

docs/porting-from-together.md holds the script before and after; both run here against the sandbox
as separate processes, through a kubeconfig whose user is an exec plugin (as EKS's and GKE's are):
the "before" script with a `together` module that is kubetune's client, the "after" one as written.
Each trains a LoRA job to the end, lists its Events and checkpoints, and downloads a folder that
AutoModelForCausalLM loads.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from ..conftest import REPO
from .models import E2eModels, put_data
from .sandboxes import Running, e2e_sandbox
from .test_e2e_jobs_succeed import load_and_generate

DOC = REPO / "docs" / "porting-from-together.md"
EXEC_TOKEN = "exec-plugin-token-6b1f"
PLUGIN = """\
import json, pathlib, sys
pathlib.Path(sys.argv[1]).open("a").write("called\\n")
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": sys.argv[2]}}))
"""


def documented_scripts() -> tuple[str, str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    return blocks[0], blocks[1]


def exec_kubeconfig(sandbox_kubeconfig: Path, folder: Path) -> tuple[Path, Path]:
    """The sandbox's kubeconfig with its token replaced by an exec plugin; (kubeconfig, the plugin's call log)."""
    config: dict[str, Any] = yaml.safe_load(sandbox_kubeconfig.read_text())
    plugin, calls = folder / "plugin.py", folder / "plugin-calls.txt"
    plugin.write_text(PLUGIN)
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin), str(calls), EXEC_TOKEN],
            "interactiveMode": "Never",
        }
    }
    path = folder / "exec-kubeconfig.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, calls


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory, e2e_models: E2eModels) -> AsyncIterator[Running]:
    async with e2e_sandbox(tmp_path_factory.mktemp("sandbox"), e2e_models) as running:
        yield running


async def run_script(script: str, *, folder: Path, env: dict[str, str], timeout: float = 300) -> str:
    path = folder / "script.py"
    path.write_text(script)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(path), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text
    return text


def test_the_two_scripts_differ_only_in_the_import_and_the_client_line() -> None:
    before, after = documented_scripts()
    changed = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert sorted(changed) == [
        "+client = Kubetune()",
        "+from kubetune_operator.client import Kubetune",
        "-client = Together()",
        "-from together import Together",
    ]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("shape", ["together", "kubetune"])
async def test_the_script_trains_lists_and_downloads_a_loadable_model(
    running: Running, e2e_models: E2eModels, tmp_path: Path, shape: str
) -> None:
    before, after = documented_scripts()
    data = put_data(running.volume("datasets"), claim="datasets", source=e2e_models.train, as_name="train.jsonl")
    kubeconfig, plugin_calls = exec_kubeconfig(running.sandbox.kubeconfig, tmp_path)
    shim = tmp_path / "shim"
    (shim / "together").mkdir(parents=True)
    (shim / "together" / "__init__.py").write_text("from kubetune_operator.client import Kubetune as Together\n")
    python_path = os.pathsep.join([*([str(shim)] if shape == "together" else []), *sys.path])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KUBE")},
        "PYTHONPATH": python_path,
        "KUBECONFIG": str(kubeconfig),
        "KUBETUNE_PVC_ROOT": str(running.sandbox.volume("x").parent),
        "BASE_MODEL": "auto",
        "HF_MODEL": "tiny-org/tiny-llama",
        "TRAINING_FILE": data,
        "OUTPUT_DIR": str(tmp_path / "downloaded"),
    }

    printed = await run_script(before if shape == "together" else after, folder=tmp_path, env=env)

    created = re.search(r"^created (ft-[0-9a-f]{10}) (\S+)$", printed, flags=re.MULTILINE)
    assert created is not None, printed
    job = created.group(1)
    assert f"finished {job} completed" in printed, printed
    assert re.search(r"StageStarted stage Training started", printed), printed
    assert "Final Merged " + job in printed, printed
    assert "Final Adapter " + job in printed, printed
    spec = (await running.view.job(job))["spec"]
    assert spec["lora"] == {"enabled": True, "r": 8}
    assert spec["suffix"] == "support-bot"
    assert "adapter" not in {p.name for p in (tmp_path / "downloaded").iterdir()}
    prompt, generated = await asyncio.to_thread(load_and_generate, tmp_path / "downloaded")
    assert generated > prompt

    # Every request the client sent carried the exec plugin's token.
    assert plugin_calls.read_text().count("called") >= 1
    sent = running.sandbox.emulator.writes(user_agent="kubetune-client")
    assert sent, "the client wrote nothing"
    assert {request.headers.get("Authorization") for request in sent} == {f"Bearer {EXEC_TOKEN}"}
    assert json.dumps(spec).find(EXEC_TOKEN) == -1
