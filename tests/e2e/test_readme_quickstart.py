"""Every command of the README's sandbox quick start runs, in order, as a user types it; and `make demo` works.

The session runs in a fresh folder holding the repo's examples, with the system kubectl and
the installed `kubetune` on PATH. Commands run through bash (so `$PWD` expands as in a
terminal); `... &` starts a background process, `kill %1` stops it, and `kubectl get ftj -w`
is read until its row says Succeeded (a user would press Ctrl-C then).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..conftest import REPO
from ..kubectl import KUBECTL_ENV
from .host_processes import processes_under

README = (REPO / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent


def sandbox_session() -> list[str]:
    """The commands of the README block that starts `kubetune sandbox`."""
    blocks = re.findall(r"```console\n(.*?)```", README, flags=re.S)
    (block,) = [b for b in blocks if "$ kubetune sandbox" in b]
    return [line[2:] for line in block.splitlines() if line.startswith("$ ")]


def make_demo_command() -> str:
    blocks = re.findall(r"```console\n(.*?)```", README, flags=re.S)
    commands = [line[2:] for b in blocks for line in b.splitlines() if line.startswith("$ make demo")]
    assert commands == ["make demo"]
    return commands[0]


def user_environ(cwd: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "KUBECONFIG"))}
    environ["PATH"] = f"{BIN}{os.pathsep}{environ.get('PATH', '')}"
    environ["PWD"] = str(cwd)
    return {**environ, **KUBECTL_ENV}


def job_phase(*, cwd: Path, environ: dict[str, str]) -> str:
    done = subprocess.run(
        ["kubectl", "get", "ftj", "quickstart", "-o", "jsonpath={.status.phase}"],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def watch_until_finished(command: str, *, cwd: Path, environ: dict[str, str], timeout: float) -> list[str]:
    """Run `kubectl get ftj -w` until the job is Succeeded or Failed and the watch printed a row of it; its lines.

    The phase is read apart from the watch, so a watch that never prints the last row fails the
    test's assertions on what it printed (30 s after the job finished), not on the job's clock.
    """
    process = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    printed = b""
    deadline = time.monotonic() + timeout
    try:
        while job_phase(cwd=cwd, environ=environ) not in ("Succeeded", "Failed"):
            assert process.poll() is None, f"{command} ended early ({process.returncode})"
            assert time.monotonic() < deadline, f"the job did not finish in {timeout:.0f}s"
            printed += process.stdout.read() or b""
            time.sleep(0.5)
        finished = time.monotonic() + 30
        while time.monotonic() < finished and not any(
            line.split()[1:2] in (["Succeeded"], ["Failed"]) for line in printed.decode(errors="replace").splitlines()
        ):
            printed += process.stdout.read() or b""
            time.sleep(0.2)
        return printed.decode(errors="replace").splitlines()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)


def test_every_command_of_the_sandbox_quick_start_runs(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    environ = user_environ(tmp_path)
    background: subprocess.Popen[bytes] | None = None
    printed: dict[str, str] = {}
    try:
        for command in sandbox_session():
            if command.endswith(" &"):
                log = (tmp_path / "background.log").open("wb")
                background = subprocess.Popen(
                    ["bash", "-c", f"exec {command[:-2]}"], cwd=tmp_path, env=environ, stdout=log, stderr=log
                )
                ready = tmp_path / ".kubetune-sandbox" / "sandbox.json"
                deadline = time.monotonic() + 60
                while not ready.exists():
                    assert background.poll() is None, (tmp_path / "background.log").read_text()
                    assert time.monotonic() < deadline, "the sandbox never wrote sandbox.json"
                    time.sleep(0.2)
            elif command.startswith("export "):
                name, _, value = command.removeprefix("export ").partition("=")
                environ[name] = value.replace("$PWD", str(tmp_path))
            elif command == "kill %1":
                assert background is not None
                background.send_signal(signal.SIGTERM)
                assert background.wait(timeout=60) == 0, (tmp_path / "background.log").read_text()
            elif command.endswith(" -w"):
                printed[command] = "\n".join(watch_until_finished(command, cwd=tmp_path, environ=environ, timeout=180))
            else:
                done = subprocess.run(
                    ["bash", "-c", command], cwd=tmp_path, env=environ, capture_output=True, text=True, check=False
                )
                assert done.returncode == 0, (command, done.stdout, done.stderr)
                printed[command] = done.stdout
    finally:
        if background is not None and background.poll() is None:
            background.kill()
            background.wait()

    watched = printed["kubectl get ftj -w"].splitlines()
    assert watched[0].split()[:3] == ["NAME", "PHASE", "STAGE"]
    assert watched[-1].split()[:2] == ["quickstart", "Succeeded"]
    described = printed["kubectl describe ftj quickstart"]
    assert "Succeeded" in described
    assert "stage Training started" in described
    assert printed["kubectl logs -l kubetune.dev/job=quickstart,kubetune.dev/component=trainer"].strip()
    model_dir = tmp_path / ".kubetune-sandbox" / "volumes" / "pvc" / "models" / "quickstart"
    assert (model_dir / "config.json").exists()
    assert (model_dir / "model.safetensors").exists()


def test_make_demo_succeeds_within_three_minutes(tmp_path: Path) -> None:
    """`make demo` as the README shows it, in a scratch workdir, with the already installed environment."""
    venv = Path(sys.prefix)
    started = time.monotonic()
    done = subprocess.run(
        # -o: the suite runs inside the installed venv; make must not reinstall it under the test.
        [
            *make_demo_command().split(),
            "-o",
            str(venv / ".installed-sandbox"),
            f"VENV={venv}",
            f"DEMO_WORKDIR={tmp_path}/demo",
        ],
        cwd=REPO,
        env=user_environ(REPO),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    elapsed = time.monotonic() - started

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "TINY RANDOM stand-in" in out
    assert "$ kubectl apply --validate=false -f examples/quickstart.yaml" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("quickstart ")]
    assert [row[1] for row in rows][-1] == "Succeeded"
    assert {"DataDownload", "Initialization", "Training", "Saving", "Upload"} <= {
        row[2] for row in rows if len(row) > 2
    }
    assert any(re.fullmatch(r"\d+%", cell) for row in rows for cell in row), out  # the PROGRESS column
    assert re.search(r"demo succeeded in \d+s", out)
    assert elapsed < 180, f"make demo took {elapsed:.0f}s"
    # The load lines it prints work as printed: the shell snippet, with the venv's Python it names, loads
    # the model (with two lines added that generate from it).
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("load it with the Python that has transformers"))
    snippet = [line.removeprefix("  ") for line in lines[start + 1 : lines.index("  EOF", start) + 1]]
    python, *heredoc = snippet[0].split()
    assert heredoc == ["-", "<<'EOF'"], out
    assert Path(os.path.abspath(REPO / python)) == venv / "bin" / "python", "the snippet names the venv's Python"
    assert any("AutoModelForCausalLM.from_pretrained(" in line for line in snippet), out
    generate = [
        "ids = tokenizer('hello', return_tensors='pt')",
        "print(ids['input_ids'].shape[1], model.generate(**ids, max_new_tokens=3).shape[1])",
    ]
    script = "\n".join([*snippet[:-1], *generate, snippet[-1]])
    environ = {k: v for k, v in user_environ(REPO).items() if k != "PYTHONPATH"}
    loaded = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO,
        env={**environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert f"`source {Path(python).parent}/activate` puts them on PATH" in out
    assert (venv / "bin" / "kubetune").exists()
    assert loaded.returncode == 0, loaded.stderr
    prompt, generated = (int(n) for n in loaded.stdout.split()[-2:])
    assert generated > prompt, loaded.stdout


def test_the_demo_exits_non_zero_when_the_job_does_not_succeed(tmp_path: Path) -> None:
    """A quick start whose data file is missing fails in the preflight: the demo says why and exits 1."""
    manifest = tmp_path / "missing-data.yaml"
    quickstart = (REPO / "examples" / "quickstart.yaml").read_text(encoding="utf-8")
    manifest.write_text(quickstart.replace("pvc://datasets/chat/train.jsonl", "pvc://datasets/chat/missing.jsonl"))
    data = REPO / "examples" / "data" / "tiny-chat-train.jsonl"
    demo = [sys.executable, "-m", "kubetune_sandbox.demo", "--workdir", str(tmp_path / "demo")]
    done = subprocess.run(
        [*demo, "--manifest", str(manifest), "--data", str(data)],
        cwd=REPO,
        env=user_environ(REPO),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    assert "the job did not succeed: phase Failed" in done.stdout
    assert "InvalidInput" in done.stdout
    assert "hint: " in done.stdout
    assert re.search(r"demo FAILED in \d+s", done.stdout)
    assert not processes_under(tmp_path)
