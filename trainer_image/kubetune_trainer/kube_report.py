"""Progress into the FineTuneJob's status, from rank 0 of a trainer pod.

The pod's ServiceAccount may `get` and `patch` only `finetunejobs/status` of its own job, and
the trainer writes only `status.stage`, `status.stages` and `status.progress` with a JSON merge
patch: everything else in the status belongs to the operator. Patches are rate-limited to one
every `report.minIntervalSeconds`, except that a stage transition, a new checkpoint and a new
evaluation are always sent at once.

A failed patch is logged and forgotten (the next one carries the whole state again): reporting
must never stop training. The termination message, not this channel, carries the final result.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .contract import SERVICE_ACCOUNT_DIR_ENV, JobIdentity, Progress, ProgressReport, Result, Stage, StageRecord

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"
STATUS_PATH = "/apis/kubetune.dev/v1alpha1/namespaces/{namespace}/finetunejobs/{name}/status"


@dataclass(frozen=True)
class InClusterAccess:
    """How a pod reaches its API server: the service address and the mounted ServiceAccount files."""

    server: str
    token_file: Path
    ca_file: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, account_dir: Path = SERVICE_ACCOUNT_DIR) -> InClusterAccess:
        """The API address from KUBERNETES_SERVICE_HOST/PORT; the token and CA from the ServiceAccount
        directory, which `KUBETUNE_SERVICE_ACCOUNT_DIR` moves (the sandbox runs pods as host processes,
        where Kubernetes' fixed path does not exist)."""
        account_dir = Path(environ.get(SERVICE_ACCOUNT_DIR_ENV) or account_dir)
        host = environ.get("KUBERNETES_SERVICE_HOST")
        port = environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise RuntimeError(
                "report.kind is kubernetes but KUBERNETES_SERVICE_HOST is unset: not running in a pod; "
                "use report.kind terminal for local runs"
            )
        # An IPv6 service address needs brackets in a URL.
        host = f"[{host}]" if ":" in host else host
        return cls(server=f"https://{host}:{port}", token_file=account_dir / "token", ca_file=account_dir / "ca.crt")


@dataclass
class StatusPatcher:
    """PATCHes `finetunejobs/<name>/status` of one job. The token is read per request: projected tokens rotate."""

    access: InClusterAccess
    job: JobIdentity
    timeout_seconds: float = 5.0
    _client: httpx.Client | None = field(default=None, repr=False)

    def patch(self, body: Mapping[str, object]) -> None:
        """Send one merge patch; raises httpx errors for the caller to log."""
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.access.server,
                verify=ssl.create_default_context(cafile=str(self.access.ca_file)),
                timeout=self.timeout_seconds,
            )
        token = self.access.token_file.read_text(encoding="utf-8").strip()
        response = self._client.patch(
            STATUS_PATH.format(namespace=self.job.namespace, name=self.job.name),
            json=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": MERGE_PATCH},
        )
        if response.status_code >= 400:
            reason = _api_reason(response)
            raise httpx.HTTPStatusError(f"{response.status_code} {reason}", request=response.request, response=response)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _newest_steps(progress: Progress) -> tuple[int | None, int | None]:
    """The steps of the newest checkpoint and evaluation a report carries."""
    checkpoints, evals = progress.recent_checkpoints, progress.recent_evals
    return (checkpoints[-1].step if checkpoints else None, evals[-1].step if evals else None)


def _api_reason(response: httpx.Response) -> str:
    """The API server's `Status.reason`/`message`; never the request (it holds the token)."""
    try:
        status = response.json()
        return f"{status.get('reason', '')}: {status.get('message', '')}".strip(": ")
    except ValueError:
        return response.reason_phrase


class KubernetesReporter:
    """Rank 0's reporter in a pod: stage transitions at once, progress at most every `min_interval_seconds`."""

    def __init__(
        self,
        patcher: StatusPatcher,
        *,
        min_interval_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._patcher = patcher
        self._min_interval = min_interval_seconds
        self._monotonic = monotonic
        self._stage: Stage | None = None
        self._stages: list[StageRecord] = []
        self._progress: Progress | None = None
        self._sent_at: float | None = None
        self._unsent = False

    def stage_changed(self, stage: Stage, stages: Sequence[StageRecord]) -> None:
        self._stage, self._stages = stage, list(stages)
        self._send()

    def progress(self, progress: Progress) -> None:
        if progress.summary is None:
            progress = progress.model_copy(update={"summary": Progress.summarize(progress.step, progress.total_steps)})
        # A new checkpoint or evaluation is sent at once, like a stage transition: they are few
        # (nCheckpoints, nEvals), and the operator posts their Events when it sees them.
        before = _newest_steps(self._progress) if self._progress is not None else (None, None)
        news = _newest_steps(progress) != before
        self._progress = progress
        self._unsent = True
        now = self._monotonic()
        if news or self._sent_at is None or now - self._sent_at >= self._min_interval:
            self._send()

    def note(self, message: str) -> None:
        log.info("%s", message)

    def finished(self, result: Result) -> None:
        if self._unsent:
            self._send()
        self._patcher.close()

    def _send(self) -> None:
        if self._stage is None:
            return
        report = ProgressReport(stage=self._stage, stages=self._stages, progress=self._progress)
        self._sent_at = self._monotonic()
        self._unsent = False
        try:
            self._patcher.patch(report.status_patch())
        except (httpx.HTTPError, OSError) as failed:
            # The next report carries the whole state again; training goes on.
            log.warning("could not report progress to the FineTuneJob status: %s", failed)
