"""`make demo` (`python -m kubetune_sandbox.demo`): the README's quick start, here, in minutes.

No cluster, no GPU and no download: a tiny random stand-in is written under the quick start's
model name, `kubetune sandbox` runs the API, the real operator and the pods as local processes,
and `examples/quickstart.yaml` is applied to it as a user would, with `kubectl` when one is
installed. The job is followed as `kubectl get ftj -w` shows it; the demo ends with where the
model is and how to load it, and exits non-zero unless the job Succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from kubetune_operator.kube.connection import Connection
from kubetune_operator.kube.resources import FINETUNEJOBS

from .client import SandboxClient
from .control_plane import LOCK_FILE, SandboxInfo, hold_lock
from .layout import SandboxLayout
from .watch_table import WatchTable

MARKER = ".kubetune-demo"
"""A workdir holding this file was made by the demo, so a rerun may clear it (and no other folder)."""
TERMINAL = frozenset({"Succeeded", "Failed"})
DATA_CLAIM, DATA_PATH = "datasets", Path("chat/train.jsonl")


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path
    manifest: Path
    data: Path
    timeout_seconds: float
    kubectl: str | None
    """The kubectl to apply with; None: apply through the sandbox's API."""


def parse_options(argv: Sequence[str] | None, *, environ: Mapping[str, str]) -> DemoOptions:
    parser = argparse.ArgumentParser(prog="python -m kubetune_sandbox.demo", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".kubetune-demo"), help="cleared and reused per run")
    parser.add_argument("--manifest", type=Path, default=Path("examples/quickstart.yaml"))
    parser.add_argument("--data", type=Path, default=Path("examples/data/tiny-chat-train.jsonl"))
    parser.add_argument("--timeout", type=float, default=170.0, help="seconds the job may take (default 170)")
    parser.add_argument("--no-kubectl", action="store_true", help="apply through the API even if kubectl exists")
    args = parser.parse_args(argv)
    kubectl = None if args.no_kubectl else shutil.which("kubectl", path=environ.get("PATH"))
    return DemoOptions(
        workdir=args.workdir.resolve(),
        manifest=args.manifest,
        data=args.data,
        timeout_seconds=args.timeout,
        kubectl=kubectl,
    )


def say(stream: TextIO, text: str) -> None:
    print(text, file=stream, flush=True)


def fresh_workdir(workdir: Path) -> None:
    """An empty workdir; an old one is cleared only if the demo made it (the marker) and no sandbox runs in it."""
    if workdir.exists() and not workdir.is_dir():
        raise SystemExit(f"{workdir} is a file, not a directory: pass another --workdir")
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).exists():
            raise SystemExit(f"{workdir} exists and was not made by the demo: pass another --workdir")
        if _sandbox_running(workdir / "sandbox"):
            raise SystemExit(
                f"a demo is still running in {workdir} (its sandbox holds {workdir / 'sandbox' / LOCK_FILE}): "
                "wait for it, or pass another --workdir"
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by `make demo`; deleted by its next run\n", encoding="utf-8")


def _sandbox_running(sandbox_dir: Path) -> bool:
    """Whether a sandbox holds the workdir's lock (the lock the sandbox itself takes, freed when it dies)."""
    lock_path = sandbox_dir / LOCK_FILE
    if not lock_path.is_file():
        return False
    lock = hold_lock(lock_path)
    if lock is None:
        return True
    lock.close()  # frees it at once: the demo only looked
    return False


def write_stand_in(repo: str, *, hf_home: Path, environ: Mapping[str, str], stream: TextIO) -> None:
    """The quick start's model as a tiny random llama (its real architecture: SmolLM2 is a LlamaForCausalLM)."""
    say(stream, f"The Hugging Face Hub is not reachable from here: {repo} is replaced by a TINY RANDOM stand-in")
    say(stream, "of the same architecture, written into a local HF cache. It trains for real; it knows nothing.")
    argv = ["tiny-model", "--arch", "llama", "--repo-id", repo, "--hf-home", str(hf_home)]
    say(stream, f"$ kubetune {' '.join(argv)}")
    done = subprocess.run(
        [sys.executable, "-m", "kubetune_operator.cli", *argv],
        env=dict(environ),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"kubetune tiny-model failed:\n{done.stdout}{done.stderr}")


def start_sandbox(
    *, workdir: Path, hf_home: Path, environ: Mapping[str, str], stream: TextIO
) -> tuple[subprocess.Popen[bytes], Path]:
    """`kubetune sandbox` as its own process; returns it and its kubeconfig once its sandbox.json appears."""
    sandbox_dir = workdir / "sandbox"
    # Progress every half second (the operator's default is 5 s): the demo's job is short, and the watch
    # should show it step by step rather than jump from Training to 100%.
    argv = [
        "sandbox",
        "--workdir",
        str(sandbox_dir),
        "--hf-home",
        str(hf_home),
        "--pod-env",
        "HF_HUB_OFFLINE=1",
        "--operator-env",
        "KUBETUNE_REPORT_INTERVAL_SECONDS=0.5",
    ]
    say(stream, f"$ kubetune {' '.join(argv)} &")
    with (workdir / "sandbox.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubetune_operator.cli", *argv], env=dict(environ), stdout=log, stderr=log
        )
    ready = sandbox_dir / "sandbox.json"
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_sandbox(process)
            log_text = (workdir / "sandbox.log").read_text(encoding="utf-8", errors="replace")
            raise SystemExit(f"kubetune sandbox did not start (log {workdir / 'sandbox.log'}):\n{log_text[-3000:]}")
        time.sleep(0.2)
    kubeconfig = Path(SandboxInfo.model_validate_json(ready.read_text(encoding="utf-8")).kubeconfig)
    say(stream, f"sandbox ready; export KUBECONFIG={kubeconfig}")
    return process, kubeconfig


def stop_sandbox(process: subprocess.Popen[bytes]) -> None:
    """SIGINT, as Ctrl-C: the sandbox stops its pods and its operator; SIGKILL only if it does not within 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def apply_manifest(
    manifest: dict[str, Any],
    *,
    path: Path,
    options: DemoOptions,
    connection: Connection,
    kubeconfig: Path,
    stream: TextIO,
) -> tuple[str, str]:
    """`kubectl apply --validate=false -f` (or, with no kubectl, a create through the API); (namespace, name)."""
    namespace = manifest["metadata"].get("namespace") or connection.default_namespace or "default"
    name = manifest["metadata"]["name"]
    if options.kubectl is not None:
        command = [options.kubectl, "--kubeconfig", str(kubeconfig), "apply", "--validate=false", "-f", str(path)]
        say(stream, f"$ kubectl apply --validate=false -f {path}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        say(stream, (done.stdout + done.stderr).rstrip())
        if done.returncode != 0:
            raise SystemExit(f"kubectl apply failed with exit code {done.returncode}")
    else:
        say(stream, f"kubectl is not installed: {path} is created through the sandbox's API instead")
        asyncio.run(_create(connection, manifest, namespace=namespace))
    return namespace, name


async def _create(connection: Connection, manifest: dict[str, Any], *, namespace: str) -> None:
    async with SandboxClient(connection) as client:
        await client.create(FINETUNEJOBS, manifest, namespace=namespace)


async def follow(
    connection: Connection, *, namespace: str, name: str, timeout_seconds: float, stream: TextIO
) -> dict[str, Any] | None:
    """Print the job as `kubectl get ftj -w` does until it finishes or the time is up; its last state.

    A watch, not polling: every status change the trainer and the operator write is seen, so no
    stage is skipped however short.
    """
    say(stream, f"$ kubectl get ftj {name} -w")
    table = WatchTable(stream)
    job: dict[str, Any] | None = None
    async with SandboxClient(connection) as client:
        try:
            async with asyncio.timeout(timeout_seconds):
                async for event in client.watch(FINETUNEJOBS, namespace=namespace):
                    if event.object.get("metadata", {}).get("name") != name or event.type == "DELETED":
                        continue
                    job = event.object
                    table.show(job, now=datetime.now(tz=UTC))
                    if job.get("status", {}).get("phase") in TERMINAL:
                        break
        except TimeoutError:
            say(stream, f"the job did not finish within {timeout_seconds:.0f}s")
    return job


def report(job: dict[str, Any] | None, *, layout: SandboxLayout, workdir: Path, stream: TextIO) -> bool:
    """What happened, where the model is and how to load it; True when the job Succeeded."""
    status = (job or {}).get("status", {})
    if status.get("phase") != "Succeeded":
        error = status.get("error") or {}
        say(stream, f"the job did not succeed: phase {status.get('phase')}")
        if error:
            say(stream, f"  {error.get('class')} ({error.get('reason')}): {error.get('message')}")
            say(stream, f"  hint: {error.get('hint')}")
        say(stream, f"operator log: {workdir / 'sandbox' / 'operator.log'}; sandbox log: {workdir / 'sandbox.log'}")
        return False
    output = status.get("outputModel") or {}
    uri = str(output.get("uri", ""))
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    local = layout.volume(claim) / path if uri.startswith("pvc://") else Path(uri)
    size = output.get("bytes")
    files = f"{output.get('files')} files, {size:,} bytes" if isinstance(size, int) else "size unknown"
    say(stream, f"Succeeded: {output.get('name')} at {uri} ({files})")
    say(stream, f"model: {local}")
    # The environment the demo installed (make demo's .venv): the system Python has no transformers.
    python = _shown(Path(sys.executable))
    say(stream, f"load it with the Python that has transformers ({python}):")
    say(stream, f"  {python} - <<'EOF'")
    say(stream, "  from transformers import AutoModelForCausalLM, AutoTokenizer")
    say(stream, f"  model = AutoModelForCausalLM.from_pretrained({str(local)!r})")
    say(stream, f"  tokenizer = AutoTokenizer.from_pretrained({str(local)!r})")
    say(stream, "  EOF")
    say(
        stream,
        f"kubetune and that Python are in {python.parent}: `source {python.parent / 'activate'}` puts them on PATH",
    )
    return True


def _shown(path: Path) -> Path:
    """`path` relative to the working directory when it is under it (`.venv/bin/python`), else absolute."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def run_demo(options: DemoOptions, *, environ: Mapping[str, str], stream: TextIO) -> int:
    started = time.monotonic()
    manifest = yaml.safe_load(options.manifest.read_text(encoding="utf-8"))
    fresh_workdir(options.workdir)
    hf_home = options.workdir / "hf"
    environ = {**environ, "HF_HUB_OFFLINE": "1"}
    write_stand_in(manifest["spec"]["fromHfModel"], hf_home=hf_home, environ=environ, stream=stream)
    process, kubeconfig = start_sandbox(workdir=options.workdir, hf_home=hf_home, environ=environ, stream=stream)
    try:
        layout = SandboxLayout(root=options.workdir / "sandbox")
        data = layout.volume(DATA_CLAIM) / DATA_PATH
        data.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(options.data, data)
        say(stream, f"training data: {options.data} copied to pvc://{DATA_CLAIM}/{DATA_PATH} ({data})")
        connection = Connection.from_env({"KUBECONFIG": str(kubeconfig)})
        namespace, name = apply_manifest(
            manifest,
            path=options.manifest,
            options=options,
            connection=connection,
            kubeconfig=kubeconfig,
            stream=stream,
        )
        job = asyncio.run(
            follow(connection, namespace=namespace, name=name, timeout_seconds=options.timeout_seconds, stream=stream)
        )
        succeeded = report(job, layout=layout, workdir=options.workdir, stream=stream)
    finally:
        stop_sandbox(process)
    say(stream, f"demo {'succeeded' if succeeded else 'FAILED'} in {time.monotonic() - started:.0f}s")
    return 0 if succeeded else 1


def main(argv: Sequence[str] | None = None) -> int:
    environ = dict(os.environ)
    return run_demo(parse_options(argv, environ=environ), environ=environ, stream=sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
