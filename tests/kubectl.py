"""The system kubectl, run as a user would, against a cluster the tests serve.

The cluster is a kubeconfig file (`KUBECONFIG=<it> kubectl ...`, as the sandbox's users run it)
or an API server's URL (`kubectl --server=<it>` with no kubeconfig, for the bare emulator).
kubectl must be installed (CI installs it): a missing kubectl fails the tests, it never skips them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import yarl

KUBECTL_ENV = {"KUBE_FEATURE_WatchListClient": "false"}
"""kubectl >= 1.35 waits for an initial-events BOOKMARK on watch-lists; the emulator's is minimal."""


async def kubectl(
    cluster: Path | yarl.URL, *args: str, stdin: str | None = None, timeout: float = 120.0
) -> tuple[int, str]:
    """Exit code and combined output of `kubectl ARGS` against `cluster`."""
    binary = shutil.which("kubectl")
    assert binary is not None, "kubectl is not on PATH: `make system-tools` installs it (Debian's kubernetes-client)"
    if isinstance(cluster, Path):
        kubeconfig, flags = str(cluster), []
    else:
        kubeconfig, flags = os.devnull, [f"--server={str(cluster).rstrip('/')}"]
    env = {**os.environ, **KUBECTL_ENV, "KUBECONFIG": kubeconfig}
    process = await asyncio.create_subprocess_exec(
        binary,
        *flags,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(stdin.encode() if stdin is not None else None), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"kubectl {' '.join(args)} did not finish within {timeout:.0f}s") from None
    return process.returncode or 0, output.decode(errors="replace")
