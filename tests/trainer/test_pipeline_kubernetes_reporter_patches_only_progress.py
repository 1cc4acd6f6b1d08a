"""Rank 0's Kubernetes reporter, against a fake API server over TLS on loopback.

It reaches the server the way a pod does (KUBERNETES_SERVICE_HOST/PORT, the ServiceAccount token
and CA files), and the test checks what the API server would see: merge patches of the job's own
status subresource, holding only stage, stages and progress, rate-limited except for stage
transitions; and that a refused patch neither stops the run nor puts the token in a log.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubetune_trainer.contract import (
    CheckpointReport,
    EvalReport,
    JobIdentity,
    Outcome,
    Progress,
    Result,
    Stage,
    StageRecord,
    StageState,
)
from kubetune_trainer.kube_report import InClusterAccess, KubernetesReporter, StatusPatcher

TOKEN = "eyJhbGciOiJSUzI1NiJ9.service-account-token-value"
JOB = JobIdentity(namespace="ml", name="tiny-chat", uid="0f0e", attempt=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class FakeApi:
    """Records every request; answers each with the next status in `statuses` (200 when none left)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(T0 - timedelta(days=1))
        .not_valid_after(datetime.now(UTC) + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "ca.crt", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FakeApi, dict[str, str], Path]]:
    """A TLS API server on loopback, the pod's environment for it, and the ServiceAccount directory."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    cert_file, key_file = _self_signed(account)
    (account / "token").write_text(TOKEN + "\n")
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            fake.requests.append(
                {
                    "path": self.path,
                    "content_type": self.headers["Content-Type"],
                    "authorization": self.headers["Authorization"],
                    "body": json.loads(body),
                }
            )
            status = fake.statuses.pop(0) if fake.statuses else 200
            reply = json.dumps(
                {"kind": "Status", "reason": "Forbidden", "message": "patch denied"} if status >= 400 else {}
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(server.server_address[1])}
    try:
        yield fake, environ, account
    finally:
        server.shutdown()
        server.server_close()


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(stage: Stage, state: StageState) -> StageRecord:
    return StageRecord(name=stage, state=state, start_time=T0)


def _reporter(environ: dict[str, str], account: Path, ticks: Ticks) -> KubernetesReporter:
    access = InClusterAccess.from_env(environ, account_dir=account)
    return KubernetesReporter(StatusPatcher(access=access, job=JOB), min_interval_seconds=5.0, monotonic=ticks)


def _training_started(api: tuple[FakeApi, dict[str, str], Path]) -> tuple[FakeApi, Ticks, KubernetesReporter]:
    """A reporter against the fake API server, on a clock the test moves, that has just reported Training running."""
    fake, environ, account = api
    ticks = Ticks()
    reporter = _reporter(environ, account, ticks)
    reporter.stage_changed(Stage.TRAINING, [_record(Stage.TRAINING, StageState.RUNNING)])
    return fake, ticks, reporter


def test_reports_are_merge_patches_of_the_jobs_own_status_with_only_progress_fields(
    api: tuple[FakeApi, dict[str, str], Path],
) -> None:
    fake, ticks, reporter = _training_started(api)

    for step in range(1, 13):
        ticks.now = step * 1.0
        reporter.progress(Progress(step=step, total_steps=12, loss=3.0 / step))
    ticks.now = 12.5
    reporter.stage_changed(Stage.TRAINING, [_record(Stage.TRAINING, StageState.SUCCEEDED)])
    reporter.finished(Result(outcome=Outcome.SUCCEEDED))

    assert {r["path"] for r in fake.requests} == {
        "/apis/kubetune.dev/v1alpha1/namespaces/ml/finetunejobs/tiny-chat/status"
    }
    assert {r["content_type"] for r in fake.requests} == {"application/merge-patch+json"}
    assert {r["authorization"] for r in fake.requests} == {f"Bearer {TOKEN}"}
    for request in fake.requests:
        assert list(request["body"]) == ["status"]
        assert set(request["body"]["status"]) <= {"stage", "stages", "progress"}
    # The transition at t=0, progress at t=5 and t=10 (every 5 s, not every step), the transition at 12.5.
    steps = [r["body"]["status"].get("progress", {}).get("step") for r in fake.requests]
    assert steps == [None, 5, 10, 12]
    assert fake.requests[-1]["body"]["status"]["stages"][0]["state"] == "Succeeded"
    assert fake.requests[-1]["body"]["status"]["progress"]["summary"] == "100% (12/12)"


def test_progress_held_back_by_the_rate_limit_is_sent_when_the_run_ends(
    api: tuple[FakeApi, dict[str, str], Path],
) -> None:
    fake, ticks, reporter = _training_started(api)
    ticks.now = 1.0
    reporter.progress(Progress(step=3, total_steps=3, loss=0.5))
    assert len(fake.requests) == 1

    reporter.finished(Result(outcome=Outcome.SUCCEEDED))

    assert fake.requests[-1]["body"]["status"]["progress"]["step"] == 3


def test_a_new_checkpoint_or_evaluation_is_sent_at_once_despite_the_rate_limit(
    api: tuple[FakeApi, dict[str, str], Path],
) -> None:
    fake, ticks, reporter = _training_started(api)
    saved = CheckpointReport(step=2, epoch=0.5, train_loss=1.0, time=T0)
    evaluated = EvalReport(step=3, eval_loss=1.5, time=T0)
    ticks.now = 1.0
    reporter.progress(Progress(step=1, total_steps=4))  # held back
    ticks.now = 1.5
    reporter.progress(Progress(step=2, total_steps=4, recent_checkpoints=[saved]))  # sent: a new checkpoint
    ticks.now = 2.0
    reporter.progress(Progress(step=3, total_steps=4, recent_checkpoints=[saved]))  # held back: nothing new
    ticks.now = 2.5
    reporter.progress(Progress(step=3, total_steps=4, recent_checkpoints=[saved], recent_evals=[evaluated]))

    sent = [r["body"]["status"].get("progress", {}) for r in fake.requests]
    assert [p.get("step") for p in sent] == [None, 2, 3]
    assert sent[1]["recentCheckpoints"][0]["step"] == 2
    assert sent[2]["recentEvals"] == [{"step": 3, "evalLoss": 1.5, "time": "2026-01-01T00:00:00Z"}]


def test_a_refused_patch_is_logged_without_the_token_and_reporting_goes_on(
    api: tuple[FakeApi, dict[str, str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    fake, environ, account = api
    fake.statuses = [403]
    ticks = Ticks()
    reporter = _reporter(environ, account, ticks)

    with caplog.at_level(logging.DEBUG):
        reporter.stage_changed(Stage.DATA_DOWNLOAD, [_record(Stage.DATA_DOWNLOAD, StageState.RUNNING)])
        # The projected token rotates; the next request reads the new one.
        (account / "token").write_text(TOKEN + "-rotated")
        reporter.stage_changed(Stage.DATA_DOWNLOAD, [_record(Stage.DATA_DOWNLOAD, StageState.SUCCEEDED)])

    assert len(fake.requests) == 2
    assert fake.requests[1]["authorization"] == f"Bearer {TOKEN}-rotated"
    assert "403 Forbidden: patch denied" in caplog.text
    assert TOKEN not in caplog.text
    assert "service-account-token" not in caplog.text


def test_an_unreachable_api_server_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    account = tmp_path / "sa"
    account.mkdir()
    _self_signed(account)
    (account / "token").write_text(TOKEN)
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "9"}
    reporter = _reporter(environ, account, Ticks())

    reporter.stage_changed(Stage.DATA_DOWNLOAD, [_record(Stage.DATA_DOWNLOAD, StageState.RUNNING)])
    reporter.finished(Result(outcome=Outcome.SUCCEEDED))

    assert "could not report progress" in caplog.text
    assert TOKEN not in caplog.text


def test_outside_a_pod_the_reporter_says_which_report_kind_to_use() -> None:
    with pytest.raises(RuntimeError, match=r"report\.kind terminal"):
        InClusterAccess.from_env({})
