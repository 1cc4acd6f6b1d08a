"""A real Prometheus on loopback: its own config, a TSDB in a temp dir, stopped by PID.

It scrapes every second, but the first sample of a target is queryable only after 5-6 s (the
scrape manager applies the first target set on its 5 s tick), so callers poll, never sleep.
"""

from __future__ import annotations

import asyncio
import math
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from .promtool import system_tool

Series = dict[str, Any]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrometheusServer:
    """`async with PrometheusServer(scrape_configs, rule_files=..., workdir=...) as prometheus:`.

    Every job is scraped and every rule evaluated each second; relative rule files are read
    from `workdir`, where the config is written.
    """

    def __init__(
        self, scrape_configs: Sequence[Mapping[str, Any]], *, rule_files: Sequence[str] = (), workdir: Path
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._workdir = workdir
        self._config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": list(rule_files),
            "scrape_configs": [dict(job) for job in scrape_configs],
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._client = httpx.AsyncClient(base_url=self.url, timeout=5)

    async def __aenter__(self) -> PrometheusServer:
        config = self._workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self._config), encoding="utf-8")
        log = (self._workdir / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                system_tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={self._workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            await self._until_ready()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.stop()

    async def _until_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise AssertionError(f"prometheus exited with {self._process.returncode}: {self.log()}")
            try:
                if (await self._client.get("/-/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus was not ready after {timeout}s: {self.log()}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await self._client.aclose()
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)

    def log(self) -> str:
        return (self._workdir / "prometheus.log").read_text(encoding="utf-8", errors="replace")[-2000:]

    async def api(self, path: str, **params: str) -> Any:
        answer = await self._client.get(f"/api/v1/{path}", params=params)
        body = answer.json()
        assert answer.status_code == 200, (path, params, body)
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    async def query(self, expr: str) -> list[Series]:
        """An instant query at now; each series as {"metric": labels, "value": [time, "text"]}."""
        data = await self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        result: list[Series] = data["result"]
        return result

    async def until(self, expr: str, *, timeout: float = 20.0, what: str = "") -> list[Series]:
        """Poll `expr` until it returns a series with a finite value (not NaN); fail naming it."""
        deadline = time.monotonic() + timeout
        while True:
            found = await self.query(expr)
            if any(math.isfinite(float(s["value"][1])) for s in found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or 'query'}: {expr!r} returned {found} after {timeout}s")
            await asyncio.sleep(0.2)
