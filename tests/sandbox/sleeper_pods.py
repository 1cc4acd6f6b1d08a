"""A pod that sleeps, and how a user waits on one with kubectl against the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from ..kubectl import kubectl

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
