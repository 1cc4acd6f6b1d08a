"""The HF token, the W&B API key and the S3 secret key and session token reach no log line, report,
Result, model card or file the trainer writes.

Sentinel values go into the variables the config names (`model.tokenEnv`, `wandb.apiKeyEnv`),
and the real trainer runs with them:

- `python -m kubetune_trainer --config FILE` in a subprocess, downloading a private repo from a
  loopback hub (so the token is really sent: without it the repo does not open), with W&B
  offline, checkpoints and an evaluation: its stdout and stderr, the termination message and
  every file under the test's directory (work dir, HF cache, checkpoints, W&B run, output and
  its model card) are searched byte for byte;
- the same job in-process, every report recorded (stage transitions, progress, notes, the
  Result) and every log record captured;
- failing runs with the token set (the hub answering 401 for a missing repo, and 500): the
  error's message and hint, the Result, the reports and the logs in process, and the entry
  point's stdout, stderr, termination message and files in a subprocess.

- `kubetune run --local --upload` reading its training data from s3:// and uploading its model
  there (moto's server, reached through spec.storage.s3's endpoint and region) with sentinel
  AWS keys, and the same with a missing key: the output, the files and the stored objects.

The subprocesses get HOME, XDG_CONFIG_HOME, XDG_CACHE_HOME and TMPDIR under the test's directory,
so what libraries write beside the work directory (W&B's settings, a netrc, temp files) is searched too.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import pytest

from kubetune_trainer.contract import ErrorClass, Outcome, Result, TrainerConfig, WandbTarget
from kubetune_trainer.pipeline import run_pipeline
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.tiny_model import TinyModel

from .local_runs import chat_spec, kubetune_run, write_chat_data, write_manifest
from .loopback import serve_s3_on_loopback
from .mock_hub import MockHub
from .training_jobs import chat_lines, trainer_config, write_jsonl

HF_TOKEN = "hf_kubetuneSENTINEL7f3a9c1e5b2d4a6f8e0c"
WANDB_KEY = "wandb-key-SENTINEL0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
S3_SECRET_KEY = "s3-secret-SENTINEL5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
S3_SESSION_TOKEN = "s3-session-SENTINEL9a8b7c6d5e4f3a2b1c0d"
SENTINELS = (HF_TOKEN, WANDB_KEY, S3_SECRET_KEY, S3_SESSION_TOKEN)
PRIVATE_REPO = "org/private-llama"


@pytest.fixture
def private_repo(mock_hub: MockHub, tiny_llama: TinyModel, tmp_path: Path) -> str:
    folder = tmp_path / "hub-repo"
    shutil.copytree(tiny_llama.snapshot_path, folder)
    mock_hub.add(PRIVATE_REPO, folder, sha=tiny_llama.revision_sha, private=True)
    return PRIVATE_REPO


def _config(tiny_llama: TinyModel, tmp_path: Path, *, repo: str, cache_dir: Path) -> TrainerConfig:
    base = trainer_config(
        tiny_llama,
        work_dir=tmp_path / "work",
        training_file=write_jsonl(tmp_path / "train.jsonl", chat_lines(16, seed=3)),
        validation_file=write_jsonl(tmp_path / "valid.jsonl", chat_lines(4, seed=9)),
        batch_size=4,
        n_checkpoints=2,
        n_evals=1,
        report="terminal",
    )
    return base.model_copy(
        update={
            "model": base.model.model_copy(update={"repo": repo, "token_env": "HF_TOKEN"}),
            "runtime": base.runtime.model_copy(update={"cache_dir": str(cache_dir)}),
            "wandb": WandbTarget(project="kubetune-tests", name="secrets", api_key_env="WANDB_API_KEY"),
        }
    )


def _environ(online_env: dict[str, str]) -> dict[str, str]:
    return {**online_env, "HF_TOKEN": HF_TOKEN, "WANDB_API_KEY": WANDB_KEY, "WANDB_MODE": "offline"}


def _contained(environ: dict[str, str], root: Path) -> dict[str, str]:
    """`environ` with home, config, cache and temp directories under `root`, so every file the
    process writes (W&B's settings and caches, a netrc, a temp file) is among those searched."""
    places = {name: root / name.lower() for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "TMPDIR")}
    for place in places.values():
        place.mkdir(parents=True, exist_ok=True)
    return {**environ, **{name: str(place) for name, place in places.items()}}


def _files_leaking(root: Path) -> list[str]:
    return [
        leak
        for path in root.rglob("*")
        if path.is_file()
        for leak in _leaks(path.read_bytes(), str(path.relative_to(root)))
    ]


def _leaks(text: str | bytes, where: str) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [f"{where} holds {sentinel[:12]}..." for sentinel in SENTINELS if sentinel.encode() in data]


def _run_trainer_process(
    config: TrainerConfig, *, online_env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[bytes]:
    """`python -m kubetune_trainer --config FILE` with the secrets in its environment, contained under `tmp_path`."""
    config_file = tmp_path / "trainer-config.json"
    config_file.write_text(config.to_json(), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "kubetune_trainer", "--config", str(config_file)],
        env=_contained(_environ(online_env), tmp_path / "process"),
        capture_output=True,
        timeout=300,
        check=False,
    )


def test_a_real_run_writes_the_secrets_nowhere(
    tiny_llama: TinyModel, private_repo: str, online_env: dict[str, str], tmp_path: Path
) -> None:
    cache_dir = Path(online_env["HF_HOME"]) / "hub"
    config = _config(tiny_llama, tmp_path, repo=private_repo, cache_dir=cache_dir)

    done = _run_trainer_process(config, online_env=online_env, tmp_path=tmp_path)

    assert done.returncode == 0, done.stderr.decode()
    # The search below is only worth something if the run wrote all it could.
    work = Path(config.runtime.work_dir)
    assert list((work / "wandb").rglob("*.wandb")), "W&B wrote its offline run"
    assert list((work / "checkpoints").rglob("COMPLETE*")), "checkpoints were written"
    assert (Path(config.output.uri) / "README.md").is_file()
    assert list(cache_dir.rglob("model.safetensors")), "the private repo was downloaded with the token"
    assert (work / "termination-log").read_text(encoding="utf-8")
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) > 30
    assert _leaks(done.stdout, "stdout") + _leaks(done.stderr, "stderr") + _files_leaking(tmp_path) == []


def test_a_failing_subprocess_run_writes_the_secrets_nowhere(
    tiny_llama: TinyModel, failing_hub: tuple[MockHub, ErrorClass], online_env: dict[str, str], tmp_path: Path
) -> None:
    """The entry point's own streams on failure: its log lines, tracebacks and the printed error."""
    mock_hub, error_class = failing_hub
    config = _config(tiny_llama, tmp_path, repo="org/no-such-model", cache_dir=Path(online_env["HF_HOME"]) / "hub")

    done = _run_trainer_process(config, online_env=online_env, tmp_path=tmp_path)

    assert done.returncode != 0
    result = Result.from_termination_message((Path(config.runtime.work_dir) / "termination-log").read_text())
    assert result.error is not None
    assert result.error.error_class is error_class
    assert mock_hub.requests, "the hub was asked (with the token)"
    assert _leaks(done.stdout, "stdout") + _leaks(done.stderr, "stderr") + _files_leaking(tmp_path) == []


def test_no_report_or_log_record_holds_the_secrets(
    tiny_llama: TinyModel,
    private_repo: str,
    online_env: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = _config(tiny_llama, tmp_path, repo=private_repo, cache_dir=Path(online_env["HF_HOME"]) / "hub")
    reporter = RecordingReporter()
    caplog.set_level("DEBUG")

    result = run_pipeline(config, environ=_environ(online_env), clock=lambda: datetime.now(UTC), reporter=reporter)

    assert result.outcome is Outcome.SUCCEEDED, result.error
    assert reporter.progresses
    assert reporter.notes
    _assert_nothing_leaks(reporter, result, caplog)


@pytest.fixture(params=[(None, ErrorClass.INVALID_INPUT), (500, ErrorClass.INTERNAL)], ids=["401-missing-repo", "500"])
def failing_hub(request: pytest.FixtureRequest, mock_hub: MockHub) -> tuple[MockHub, ErrorClass]:
    """The loopback hub answering 401 RepoNotFound for a missing repo, or 500 to everything; the class expected."""
    status, expected = request.param
    mock_hub.fail_with = status
    return mock_hub, expected


def test_a_failing_run_never_shows_the_token(
    tiny_llama: TinyModel,
    failing_hub: tuple[MockHub, ErrorClass],
    online_env: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mock_hub, error_class = failing_hub
    config = _config(tiny_llama, tmp_path, repo="org/no-such-model", cache_dir=Path(online_env["HF_HOME"]) / "hub")
    reporter = RecordingReporter()
    caplog.set_level("DEBUG")

    result = run_pipeline(config, environ=_environ(online_env), clock=lambda: datetime.now(UTC), reporter=reporter)

    assert result.error is not None
    assert result.error.error_class is error_class
    assert mock_hub.requests, "the hub was asked (with the token)"
    _assert_nothing_leaks(reporter, result, caplog)
    termination = Path(config.termination_log_path).read_text(encoding="utf-8")
    assert _leaks(termination, "termination message") == []


def _assert_nothing_leaks(reporter: RecordingReporter, result: Result, caplog: pytest.LogCaptureFixture) -> None:
    reports = [records for _, records in reporter.transitions]
    texts = {
        "transitions": "".join(record.model_dump_json() for records in reports for record in records),
        "progress": "".join(progress.model_dump_json() for progress in reporter.progresses),
        "notes": "\n".join(reporter.notes),
        "results": "".join(r.model_dump_json() for r in reporter.results) + result.to_termination_message(),
        "error": "" if result.error is None else f"{result.error.message} {result.error.hint}",
        # Formatted with their arguments and tracebacks, as a log handler writes them.
        "logs": "\n".join(caplog.handler.format(record) for record in caplog.records),
    }
    assert [leak for where, text in texts.items() for leak in _leaks(text, where)] == []


@pytest.fixture
def s3_store() -> Iterator[tuple[str, object]]:
    with serve_s3_on_loopback() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="setup", aws_secret_access_key="setup")
        client.create_bucket(Bucket="datasets")
        client.create_bucket(Bucket="models")
        yield endpoint, client


@pytest.mark.parametrize("present", [True, False], ids=["succeeds", "missing-key"])
def test_an_s3_run_writes_the_object_store_keys_nowhere(  # noqa: PLR0917 - pytest passes fixtures by position
    s3_store: tuple[str, object],
    present: bool,
    tiny_qwen2: TinyModel,
    tiny_hf_home: Path,
    offline_env: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint, client = s3_store
    train, validation = write_chat_data(tmp_path / "data")
    # moto's store is shared by every server in this process: the missing key is one nobody writes.
    key = "chat/train.jsonl" if present else "chat/never-written.jsonl"
    if present:
        client.put_object(Bucket="datasets", Key=key, Body=train.read_bytes())  # type: ignore[attr-defined]
    storage = {"s3": {"endpointUrl": endpoint, "region": "us-east-1"}}
    spec = chat_spec(
        tiny_qwen2.repo_id,
        (train, validation),
        trainingFile=f"s3://datasets/{key}",
        output={"uri": "s3://models/team/chat"},
        storage=storage,
    )
    manifest = write_manifest(tmp_path / "job.yaml", name="s3-secrets", spec=spec)
    environ = {
        **offline_env,
        "AWS_ACCESS_KEY_ID": "AKIASENTINELKEYID",
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_SESSION_TOKEN": S3_SESSION_TOKEN,
    }
    caplog.set_level(logging.DEBUG)

    run = kubetune_run(manifest, workdir=tmp_path / "run", hf_home=tiny_hf_home, environ=environ, extra=("--upload",))

    if present:
        assert run.returncode == 0, run.output
        stored = client.list_objects_v2(Bucket="models").get("Contents", [])  # type: ignore[attr-defined]
        assert any(o["Key"].endswith("model.safetensors") for o in stored), "the model went to the endpoint"
        bodies = b"".join(
            client.get_object(Bucket="models", Key=o["Key"])["Body"].read()  # type: ignore[attr-defined]
            for o in stored
        )
        assert _leaks(bodies, "the uploaded objects") == []
    else:
        assert run.returncode != 0
        assert "spec.trainingFile" in run.output
    assert _leaks(run.output, "output") + _leaks(caplog.text, "logs") + _files_leaking(tmp_path) == []
    assert _leaks(run.result.to_termination_message(), "Result") == []
