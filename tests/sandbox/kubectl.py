"""The system kubectl, run as a user would: `KUBECONFIG=<the sandbox's> kubectl ...`.

kubectl must be installed (CI installs it): a missing kubectl fails the tests, it never skips them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

SLEEPER_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 5
  containers:
    - name: main
      image: python:3.11-slim
      command: ["python", "-c", "import time; print('hello from {name}', flush=True); time.sleep(600)"]
"""


async def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    """Exit code and combined output of `kubectl ARGS` against the kubeconfig's cluster."""
    binary = shutil.which("kubectl")
    assert binary is not None, "kubectl is not on PATH: install it (CI's .ci/run does)"
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        # kubectl >= 1.35 waits for an initial-events BOOKMARK on watch-lists; the emulator's is minimal.
        "KUBE_FEATURE_WatchListClient": "false",
    }
    process = await asyncio.create_subprocess_exec(
        binary,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate(stdin.encode() if stdin is not None else None)
    return process.returncode or 0, output.decode()


async def eventually(check: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 60.0) -> None:
    """Poll `check` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


async def pod_phase(kubeconfig: Path, name: str) -> str:
    code, output = await kubectl(kubeconfig, "get", "pod", name, "-o", "jsonpath={.status.phase}")
    return output.strip() if code == 0 else ""
