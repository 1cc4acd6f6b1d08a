"""fromCheckpoint names a FineTuneJob; the record names that job's uid, whose checkpoints the trainer reads."""

from __future__ import annotations

from kubetune_operator.resolve.resolution import (
    CheckpointSource,
    Resolution,
    Unresolved,
    resolve_job,
    status_resolved,
)

from .core_builders import CATALOG, JOB, SETTINGS, spec

SOURCE_UID = "5d1e0c9a-7b7f-4c55-8a0e-2b9f0f6c1d3e"
SOURCE_SHA = "1" * 40
SOURCES = {"base-chat": CheckpointSource(uid=SOURCE_UID, model_repo="acme/llama-2-7b-support", revision_sha=SOURCE_SHA)}


def _resolve(reference: str, sources: dict[str, CheckpointSource]) -> Resolution:
    return resolve_job(
        spec(fromCheckpoint=reference),
        job_name=JOB.name,
        namespace=JOB.namespace,
        templates=CATALOG,
        settings=SETTINGS,
        checkpoint_sources=sources,
    )


def test_the_record_names_the_source_jobs_uid_and_step() -> None:
    outcome = _resolve("base-chat:40", SOURCES)
    assert outcome.job is not None
    assert outcome.job.from_checkpoint == f"base-chat@{SOURCE_UID}:40"
    newest = _resolve("base-chat", SOURCES).job
    assert newest is not None
    assert newest.from_checkpoint == f"base-chat@{SOURCE_UID}"


def test_a_source_job_that_does_not_exist_is_invalid_input_naming_the_field() -> None:
    outcome = _resolve("gone-job:40", {})
    assert outcome.problem == Unresolved.INVALID_SPEC
    (line,) = outcome.field_errors
    assert line.startswith("spec.fromCheckpoint: no FineTuneJob 'gone-job' in namespace ml")


def test_the_job_continues_the_sources_repo_at_its_commit_not_the_templates_model() -> None:
    job = _resolve("base-chat:40", SOURCES).job
    assert job is not None
    assert (job.model_repo, job.revision) == ("acme/llama-2-7b-support", SOURCE_SHA)
    assert job.template.name == "llama-2-7b-chat", "the template still sizes the job"
    summary = status_resolved(job)
    assert summary.from_checkpoint == f"base-chat@{SOURCE_UID}:40"
    assert (summary.model_repo, summary.revision) == ("acme/llama-2-7b-support", SOURCE_SHA)
