"""The preflight: every check that needs no weights, run in a CPU pod before any GPU is held.

Whether the job's token may write its hf:// output repo (a refused token would otherwise be
found only at Upload, after training), model rules from config.json and the repo's file list
(an adapter repo's base included), the sequence length the model really allows, then the
training and validation files, validated line by line. The outcome is the `Result` the
operator reads from the termination log: Succeeded with the model's facts and warnings, or
Failed with the first problem (InvalidInput for the job's own mistakes, Internal and retryable
when the hub or storage failed).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path

from . import compat
from .chat_template_source import model_chat_template
from .classify import classify, exit_code_for
from .contract import ModelFacts, Outcome, Result, TrainerConfig, WarningNote
from .data import TRAINING_FIELD, VALIDATION_FIELD, DataReport, validate_file
from .data.sources import SourceSettings, fetch
from .data.tool_template import require_tool_template
from .data.validation import invalid_data
from .model_source import inspect_model
from .output_access import check_output_access

DataValidator = Callable[[Path], DataReport]
"""Validates one local data file, e.g. `kubetune_trainer.data.validate_file`."""


def run_preflight(
    config: TrainerConfig, *, environ: Mapping[str, str], data_validator: DataValidator | None = None
) -> Result:
    """Check the model and the data of `config` without downloading weights; never raises.

    `python -m kubetune_trainer preflight --config FILE` writes the Result to `config.termination_log_path`.
    """
    try:
        check_output_access(config, environ=environ)
        facts, warnings = _check_model(config, environ=environ)
        validator = data_validator or functools.partial(validate_file, method=config.hyperparameters.training_method)
        tool_files = _check_data(config, environ=environ, data_validator=validator)
        if tool_files:
            # Function-calling data needs a template that renders it: refused here, before any GPU.
            template = model_chat_template(config.model, cache_dir=Path(config.runtime.cache_dir), environ=environ)
            require_tool_template(template.text, source=template.source, field=tool_files[0])
    except Exception as failed:  # the Result is the preflight's only output: every failure goes into it
        error = classify(failed, stage=None, job_uid=config.job.uid)
        return Result(outcome=Outcome.FAILED, exit_code=exit_code_for(error), error=error)
    return Result(outcome=Outcome.SUCCEEDED, model=facts, warnings=warnings)


def _check_model(config: TrainerConfig, *, environ: Mapping[str, str]) -> tuple[ModelFacts, list[WarningNote]]:
    inspection = inspect_model(config.model, cache_dir=Path(config.runtime.cache_dir), environ=environ)
    facts = inspection.check.facts_or_raise()
    if inspection.base is not None:  # an adapter repo: what trains is it merged into this base
        base = inspection.base
        facts = ModelFacts.parse({**facts.to_wire(), "adapterOf": f"{base.repo}@{base.sha}"})
    _, warnings = compat.with_sequence_cap(config.hyperparameters.max_seq_length, facts, inspection.check.warnings)
    return facts, warnings


def _check_data(config: TrainerConfig, *, environ: Mapping[str, str], data_validator: DataValidator) -> list[str]:
    """Validate each data file; the fields whose files hold function-calling data."""
    settings = SourceSettings.from_config(config)
    dest_dir = Path(config.runtime.work_dir) / "preflight-data"
    files = [(TRAINING_FIELD, config.data.training_file), (VALIDATION_FIELD, config.data.validation_file)]
    tool_files: list[str] = []
    for field, uri in files:
        if uri is None:
            continue
        path = fetch(uri, field=field, dest_dir=dest_dir, settings=settings, environ=environ)
        report = data_validator(path)
        if not report.ok:
            raise invalid_data(report, field=field, path=path)
        if report.tool_examples:
            tool_files.append(field)
    return tool_files
