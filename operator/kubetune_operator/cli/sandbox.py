"""`kubetune sandbox`: kubetune on this machine, without a cluster, until Ctrl-C.

An emulated Kubernetes API on loopback (TLS), the real operator, a Job controller and a kubelet
that runs each pod as local processes. It is a sandbox, not a cluster: no scheduler, admission,
RBAC or containers (see docs/sandbox.md). Once ready it prints the kubeconfig and writes
`<workdir>/sandbox.json`; an operator that dies is restarted (as its Deployment would restart it);
SIGINT, SIGTERM or SIGHUP stops every pod process and the operator.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetune_sandbox.control_plane import Sandbox

SANDBOX_EXTRA_MODULES = frozenset({"kmock", "jsonschema", "cryptography", "attrs"})
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def port_number(text: str) -> int:
    """--port: 0 (any free port) to 65535; argparse names the flag in front of the message."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: give 0-65535 (0 picks a free one)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number: give 0-65535 (0 picks a free one)")
    return port


def hf_home_directory(text: str) -> Path:
    """--hf-home must exist: a wrong path would only show as a model not found, in a pod, much later."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is not a directory: give the HF_HOME that "
            "`kubetune tiny-model --arch llama --repo-id ORG/NAME --hf-home DIR` wrote, "
            "or your Hugging Face cache"
        )
    return path


def namespace_name(text: str) -> str:
    if not _NAMESPACE.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a namespace name: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63"
        )
    return text


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "sandbox", help="run the operator and its pods locally against an emulated API", description=__doc__
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(".kubetune-sandbox"),
        help="state: volumes, pods, logs (default: %(default)s)",
    )
    parser.add_argument("--port", type=port_number, default=0, help="API port on 127.0.0.1 (default: any free port)")
    parser.add_argument(
        "--hf-home", type=hf_home_directory, help="a Hugging Face cache (HF_HOME) the pods read models from"
    )
    parser.add_argument(
        "--namespace",
        type=namespace_name,
        action="append",
        default=[],
        help="a namespace to have from the start (repeatable; default: default)",
    )
    parser.add_argument("--pod-env", action="append", default=[], metavar="K=V", help="env for every pod (repeatable)")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="K=V",
        help="env for the operator, e.g. KUBETUNE_* settings",
    )
    parser.set_defaults(run=run)


def parse_pairs(pairs: list[str], *, flag: str) -> dict[str, str]:
    """`K=V` strings to a dict; a pair without `=` or with an empty K names the flag."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"{flag} {pair!r}: expected KEY=VALUE")
        parsed[key] = value
    return parsed


def run(args: argparse.Namespace) -> int:
    try:
        # The sandbox's own dependencies come with the `sandbox` extra; nothing else needs them.
        from kubetune_sandbox.control_plane import Sandbox  # noqa: PLC0415
    except ImportError as missing:
        if (missing.name or "").split(".")[0] not in SANDBOX_EXTRA_MODULES:
            raise
        print(f"kubetune sandbox needs the sandbox extra: pip install 'kubetune[sandbox]' ({missing})", file=sys.stderr)
        return 2
    try:
        sandbox = Sandbox(
            args.workdir,
            port=args.port,
            hf_home=args.hf_home,
            namespaces=tuple(args.namespace) or ("default",),
            pod_env=parse_pairs(args.pod_env, flag="--pod-env"),
            operator_env=parse_pairs(args.operator_env, flag="--operator-env"),
            on_operator_restart=_report_restart,
        )
    except ValueError as invalid:
        print(f"kubetune sandbox: {invalid}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(sandbox))


async def _serve(sandbox: Sandbox) -> int:
    from kubetune_sandbox.control_plane import READY_FILE, SandboxError, SandboxInfo  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP too: closing the terminal of `kubetune sandbox &` must stop the pods, not kill the sandbox under them.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    # Entering removes a stale file, once the workdir is ours: a sandbox refused for a busy workdir leaves it.
    ready_file = sandbox.workdir / READY_FILE
    try:
        async with sandbox:
            info = SandboxInfo(
                url=sandbox.url, kubeconfig=sandbox.kubeconfig, pid=os.getpid(), operator_log=sandbox.operator_log
            )
            print(f"kubetune sandbox: API {info.url} (an emulated control plane, not a cluster)")
            print(f"operator log: {info.operator_log}")
            print(f"kubeconfig:   {info.kubeconfig}")
            print(f"  export KUBECONFIG={info.kubeconfig}")
            print("Ctrl-C stops the sandbox, its operator and every pod.", flush=True)
            ready_file.write_text(info.model_dump_json(indent=2) + "\n", encoding="utf-8")
            try:
                await stop.wait()
            finally:
                ready_file.unlink(missing_ok=True)
    except SandboxError as failure:
        print(f"kubetune sandbox: {failure}", file=sys.stderr)
        return 1
    except OSError as failure:  # e.g. --port already in use
        print(f"kubetune sandbox: {failure}", file=sys.stderr)
        return 1
    print("kubetune sandbox: stopped", flush=True)
    return 0


def _report_restart(code: int, delay: float) -> None:
    """An operator that died is restarted, as its Deployment would restart it; the user is told why to look."""
    print(
        f"kubetune sandbox: the operator exited with code {code}; restarting it in {delay:.0f}s "
        "(the API's objects and the pods are kept; its log says why it exited)",
        file=sys.stderr,
        flush=True,
    )
