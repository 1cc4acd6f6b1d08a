"""fromCheckpoint names a FineTuneJob; the record names that job's uid, whose checkpoints the trainer reads."""

from __future__ import annotations

from kubetune_operator.resolve.resolution import Resolution, Unresolved, resolve_job

from .core_builders import CATALOG, JOB, SETTINGS, spec

SOURCE_UID = "5d1e0c9a-7b7f-4c55-8a0e-2b9f0f6c1d3e"


def _resolve(reference: str, sources: dict[str, str]) -> Resolution:
    return resolve_job(
        spec(fromCheckpoint=reference),
        job_name=JOB.name,
        namespace=JOB.namespace,
        templates=CATALOG,
        settings=SETTINGS,
        checkpoint_sources=sources,
    )


def test_the_record_names_the_source_jobs_uid_and_step() -> None:
    outcome = _resolve("base-chat:40", {"base-chat": SOURCE_UID})
    assert outcome.job is not None
    assert outcome.job.from_checkpoint == f"base-chat@{SOURCE_UID}:40"
    newest = _resolve("base-chat", {"base-chat": SOURCE_UID}).job
    assert newest is not None
    assert newest.from_checkpoint == f"base-chat@{SOURCE_UID}"


def test_a_source_job_that_does_not_exist_is_invalid_input_naming_the_field() -> None:
    outcome = _resolve("gone-job:40", {})
    assert outcome.problem == Unresolved.INVALID_SPEC
    (line,) = outcome.field_errors
    assert line.startswith("spec.fromCheckpoint: no FineTuneJob 'gone-job' in namespace ml")
