"""(job spec, templates, model facts) -> what really runs: a `ResolvedJob`, or why not, as a value.

Pure: the caller passes the templates it listed and the model facts the preflight found (from
config.json); nothing here reads the cluster or the Hub. The template's defaults sit under the
job's own values, then the template's limits are enforced, each violation at the field a user
changes. A missing template or a bad value is an outcome, never an exception.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field, ValidationError

from kubetune_trainer.contract import (
    LoraConfig,
    ModelFacts,
    WarningNote,
    WireModel,
)

from ..api.errors import FieldError, field_errors
from ..api.gpu_plan import GpuPlan
from ..api.record import ResolvedJob
from ..api.resources import BaseModelTemplate
from ..api.spec import (
    AUTO_TEMPLATE,
    DEFAULT_HYPERPARAMETERS,
    DEFAULT_LORA,
    FineTuneJobSpec,
)
from ..api.status import Resolved
from ..settings import OperatorSettings
from .gpu_plan import plan_gpus
from .limits import checked_hyperparameters, checked_lora
from .pod_additions import pod_addition_problems
from .selection import expectations_of, mismatch_warnings, recommend
from .serving import serving_problems, serving_warnings

PREFLIGHT_ANNOTATION = "kubetune.dev/preflight"
"""On a BaseModelTemplate, `"false"` turns the preflight off for jobs on it."""

NO_CHECKPOINT_LOCATION = "NoCheckpointLocation"


class CheckpointSource(WireModel):
    """The FineTuneJob a `fromCheckpoint` names, as its record shows it: whose checkpoints, of which model."""

    uid: str = Field(description="Its uid: its checkpoints are `<root>/<job>/<uid>/`.")
    model_repo: str | None = Field(None, description="The repo it trained (its status.resolved).")
    revision_sha: str | None = Field(None, description="The exact commit it trained.")


class Unresolved(enum.StrEnum):
    """Why a job has no ResolvedJob yet."""

    INVALID_SPEC = "InvalidSpec"
    """The spec fails the API models: terminal, InvalidInput."""
    TEMPLATE_NOT_FOUND = "TemplateNotFound"
    """No template answers to `model`: retried, the template may be installed later."""
    TEMPLATE_LIMIT_EXCEEDED = "TemplateLimitExceeded"
    """A value outside the template's limits: terminal, InvalidInput."""
    AWAITING_MODEL_FACTS = "AwaitingModelFacts"
    """`model: auto` chooses by config.json facts, which only the preflight reads."""


class Resolution(WireModel):
    """The outcome of resolving: `job` when it resolved, else `problem` with field errors.

    For AwaitingModelFacts, `provisional` is the job on the template the preflight runs
    under (limits not enforced); the preflight's facts then choose the real template.
    """

    job: ResolvedJob | None = Field(None, description="What runs, when resolved.")
    problem: Unresolved | None = Field(None, description="Why not resolved.")
    message: str = Field("", description="The problem in words, naming the field and the fix.")
    field_errors: list[str] = Field(default_factory=list, description="One line per bad field.")
    provisional: ResolvedJob | None = Field(None, description="For AwaitingModelFacts: what the preflight runs.")

    @property
    def ok(self) -> bool:
        return self.job is not None

    @property
    def preflight_job(self) -> ResolvedJob | None:
        """What the preflight runs: the resolved job, or for `model: auto` the provisional one."""
        return self.job or self.provisional

    @property
    def retryable(self) -> bool:
        return self.problem == Unresolved.TEMPLATE_NOT_FOUND


def parse_spec(raw: Mapping[str, Any]) -> FineTuneJobSpec | Resolution:
    """The spec as the model reads it, or an InvalidSpec resolution listing every bad field."""
    try:
        return FineTuneJobSpec.parse(raw)
    except ValidationError as error:
        errors = [_at_spec(e) for e in field_errors(error, model=FineTuneJobSpec)]
        return _problem(Unresolved.INVALID_SPEC, "the spec is invalid", errors)


def resolve_job(
    spec: FineTuneJobSpec,
    *,
    job_name: str,
    namespace: str,
    templates: Sequence[BaseModelTemplate],
    settings: OperatorSettings,
    facts: ModelFacts | None = None,
    chosen_template: str | None = None,
    checkpoint_sources: Mapping[str, CheckpointSource] | None = None,
) -> Resolution:
    """Resolve `spec` against `templates`.

    `facts` are config.json facts from the preflight (needed by `model: auto`, and used for
    the sequence-length default and mismatch warnings). `chosen_template` is the template
    already recorded in `status.resolved.template`, so an `auto` job keeps its choice across
    reconciles without needing the facts again. `checkpoint_sources` maps the FineTuneJobs of the
    namespace `fromCheckpoint` may name to what their records show (None: not known, as for a local
    run): it must name one, and the job continues exactly what that one trained, its repo at its
    commit, from its uid's checkpoints.
    """
    if refused := pod_addition_problems(spec.pod, settings):
        return _problem(
            Unresolved.INVALID_SPEC, "the spec asks for pod additions this installation does not allow", refused
        )
    from_checkpoint = _checkpoint_source(spec.from_checkpoint, sources=checkpoint_sources, namespace=namespace)
    if isinstance(from_checkpoint, Resolution):
        return from_checkpoint
    source = _source_of(spec.from_checkpoint, checkpoint_sources)
    picked = _pick_template(spec, templates=templates, facts=facts, chosen=chosen_template)
    if isinstance(picked, Resolution):
        if picked.problem != Unresolved.AWAITING_MODEL_FACTS:
            return picked
        provisional = _provisional(spec, job_name=job_name, namespace=namespace, templates=templates, settings=settings)
        return picked.model_copy(update={"provisional": provisional})
    template, reasons, warnings = picked
    errors: list[FieldError] = []
    job = _apply(
        spec,
        template,
        job_name=job_name,
        namespace=namespace,
        settings=settings,
        facts=facts,
        errors=errors,
        source=source,
    )
    serve_errors = serving_problems(spec.serve, job, facts=facts)
    if serve_errors:
        return _problem(Unresolved.INVALID_SPEC, "the spec is invalid", serve_errors)
    if errors:
        return _problem(
            Unresolved.TEMPLATE_LIMIT_EXCEEDED,
            f"the job asks for more than template {template.name} allows",
            errors,
        )
    if facts is not None and spec.model != AUTO_TEMPLATE:
        warnings = [*warnings, *mismatch_warnings(facts, template)]
    warnings = [*warnings, *serving_warnings(spec.serve, ttl=spec.ttl_seconds_after_finished)]
    changes = {"template_reasons": reasons, "warnings": [*warnings, *job.warnings], "from_checkpoint": from_checkpoint}
    return Resolution(job=job.model_copy(update=changes))


def _source_of(reference: str | None, sources: Mapping[str, CheckpointSource] | None) -> CheckpointSource | None:
    if reference is None or sources is None:
        return None
    return sources.get(reference.partition(":")[0].partition("@")[0])


def _checkpoint_source(
    reference: str | None, *, sources: Mapping[str, CheckpointSource] | None, namespace: str
) -> str | Resolution | None:
    """`fromCheckpoint` as the trainer reads it, `<job>@<uid>[:<step>]`, or why it names no job."""
    if reference is None or sources is None:
        return reference
    job, _, step = reference.partition(":")
    job = job.partition("@")[0]
    found = sources.get(job)
    if found is None:
        return _problem(
            Unresolved.INVALID_SPEC,
            "the spec is invalid",
            [
                f"spec.fromCheckpoint: no FineTuneJob {job!r} in namespace {namespace}: name a job of this "
                "namespace that wrote checkpoints (`kubectl get ftj` lists them)"
            ],
        )
    return f"{job}@{found.uid}" + (f":{step}" if step else "")


def _pick_template(
    spec: FineTuneJobSpec,
    *,
    templates: Sequence[BaseModelTemplate],
    facts: ModelFacts | None,
    chosen: str | None,
) -> tuple[BaseModelTemplate, list[str], list[WarningNote]] | Resolution:
    if spec.model != AUTO_TEMPLATE:
        found = next((t for t in templates if t.answers_to(spec.model)), None)
        if found is None:
            return _not_found(spec.model, templates)
        return found, [], []
    if chosen is not None and (kept := next((t for t in templates if t.name == chosen), None)) is not None:
        return kept, [f"chosen earlier for {spec.from_hf_model}: {chosen}"], []
    if not templates:
        return _not_found(spec.model, templates)
    if facts is None:
        return Resolution(
            problem=Unresolved.AWAITING_MODEL_FACTS,
            message=f"model: auto picks a template from {spec.from_hf_model}'s config.json, which the preflight reads",
        )
    recommendation = recommend(facts, templates)
    template = next(t for t in templates if t.name == recommendation.template)
    return template, list(recommendation.reasons), list(recommendation.warnings)


def _not_found(reference: str, templates: Sequence[BaseModelTemplate]) -> Resolution:
    known = ", ".join(sorted(t.name for t in templates)[:20]) or "none installed"
    return Resolution(
        problem=Unresolved.TEMPLATE_NOT_FOUND,
        message=f"no BaseModelTemplate is named or aliased {reference!r} (known: {known}); "
        "install it (kubectl get bmt lists them) or set spec.model to one of them",
        field_errors=[f"spec.model: no template answers to {reference!r}"],
    )


def _provisional(
    spec: FineTuneJobSpec,
    *,
    job_name: str,
    namespace: str,
    templates: Sequence[BaseModelTemplate],
    settings: OperatorSettings,
) -> ResolvedJob | None:
    """The job on the smallest template, limits unchecked: enough for a CPU preflight to read facts."""
    if not templates:
        return None
    smallest = min(templates, key=lambda t: (t.spec.parameters, t.name))
    return _apply(spec, smallest, job_name=job_name, namespace=namespace, settings=settings, facts=None, errors=None)


def _apply(
    spec: FineTuneJobSpec,
    template: BaseModelTemplate,
    *,
    job_name: str,
    namespace: str,
    settings: OperatorSettings,
    facts: ModelFacts | None,
    errors: list[FieldError] | None,
    source: CheckpointSource | None = None,
) -> ResolvedJob:
    """The spec over the template's defaults; limit violations go to `errors` (None: not checked)."""
    tspec = template.spec
    lora_spec = spec.lora.layered_over(tspec.training.lora.layered_over(DEFAULT_LORA))
    hyper = spec.hyperparameters.layered_over(tspec.training.hyperparameters.layered_over(DEFAULT_HYPERPARAMETERS))
    found: list[FieldError] = [] if errors is None else errors
    lora = checked_lora(lora_spec, template, errors=found)
    hyperparameters = checked_hyperparameters(
        hyper, template, lora=lora is not None, facts=facts, errors=found, method=spec.training_method
    )
    # A fromCheckpoint job continues exactly what its source trained: that repo at that commit.
    repo = (source.model_repo if source is not None else None) or spec.from_hf_model or tspec.hf_model
    revision = (source.revision_sha if source is not None else None) or spec.hf_model_revision or "main"
    # Every job's checkpoints are `<root>/<job>/<uid>/`, so fromCheckpoint finds another job's under the same root.
    if spec.checkpoint is not None:
        checkpoint_root: str | None = spec.checkpoint.uri.rstrip("/")
        checkpoint_uri: str | None = spec.checkpoint.uri
    elif settings.default_checkpoint_uri is not None:
        checkpoint_root = _scoped(settings.default_checkpoint_uri, namespace)
        checkpoint_uri = f"{checkpoint_root}/{job_name}"
    else:
        checkpoint_root = checkpoint_uri = None
    warnings = []
    if checkpoint_uri is None:
        warnings.append(
            WarningNote(
                reason=NO_CHECKPOINT_LOCATION,
                message="no checkpoint location: a retry or a resume after suspend starts training over; "
                "set spec.checkpoint.uri (pvc://claim/path or s3://bucket/prefix) to resume instead",
            )
        )
    output_uri = spec.output.uri if spec.output else f"{_scoped(settings.default_output_uri, namespace)}/{job_name}"
    preflight = settings.preflight and template.metadata.annotations.get(PREFLIGHT_ANNOTATION, "true") != "false"
    gpu_plan = _gpu_plan(spec, template, facts=facts, lora=lora, seq=hyperparameters.max_seq_length, errors=found)
    return ResolvedJob(
        template=expectations_of(template),
        model_repo=repo,
        revision=revision,
        hf_token_secret_ref=spec.hf_token_secret_ref,
        training_file=spec.training_file,
        validation_file=spec.validation_file,
        hyperparameters=hyperparameters,
        lora=lora,
        output_uri=output_uri,
        output_name=f"{repo.rsplit('/', 1)[-1]}-{spec.suffix or job_name}",
        output_private=spec.output.private if spec.output else True,
        checkpoint_uri=checkpoint_uri,
        checkpoint_root=checkpoint_root,
        from_checkpoint=spec.from_checkpoint,
        wandb=spec.wandb,
        s3=spec.storage.s3 if spec.storage else None,
        pod=spec.pod,
        image=tspec.image or settings.trainer_image,
        resources=(
            tspec.resources.model_copy(update={"nodes": gpu_plan.nodes, "gpus_per_node": gpu_plan.gpus_per_node})
            if gpu_plan is not None
            else tspec.resources
        ),
        strategy=tspec.training.strategy,
        precision=tspec.training.precision,
        master_weights=tspec.training.master_weights,
        gradient_checkpointing=gpu_plan.gradient_checkpointing if gpu_plan else tspec.training.gradient_checkpointing,
        gpu_plan=gpu_plan,
        attention=tspec.training.attention,
        compile=tspec.training.compile,
        expected_tokens_per_second_per_gpu=tspec.training.expected_tokens_per_second_per_gpu,
        preflight=preflight,
        queue_name=spec.queue_name,
        priority_class_name=spec.priority_class_name,
        warnings=warnings,
    )


def _gpu_plan(
    spec: FineTuneJobSpec,
    template: BaseModelTemplate,
    *,
    facts: ModelFacts | None,
    lora: LoraConfig | None,
    seq: int,
    errors: list[FieldError],
) -> GpuPlan | None:
    """The GPU planner's sizing (None on a CPU template); a spec.gpus it cannot run goes to `errors`."""
    if template.spec.resources.gpus_per_node == 0:
        if spec.gpus is not None:
            errors.append(FieldError("spec.gpus", str(spec.gpus), f"template {template.name} runs on CPUs only"))
        return None
    try:
        return plan_gpus(
            template.spec,
            parameters=facts.parameters if facts is not None and facts.parameters else None,
            shape=facts.shape if facts is not None else None,
            lora_rank=lora.r if lora is not None else None,
            lora_dropout=lora is not None and lora.dropout > 0,
            max_seq_length=seq,
            requested_gpus=spec.gpus,
        )
    except ValueError as error:
        errors.append(FieldError("spec.gpus", str(spec.gpus), str(error)))
        return plan_gpus(
            template.spec,
            parameters=facts.parameters if facts is not None and facts.parameters else None,
            shape=facts.shape if facts is not None else None,
            lora_rank=lora.r if lora is not None else None,
            lora_dropout=lora is not None and lora.dropout > 0,
            max_seq_length=seq,
        )


def _scoped(uri: str, namespace: str) -> str:
    """An installation-wide default location, with the namespace under it so tenants never share."""
    return f"{uri.rstrip('/')}/{namespace}"


def _at_spec(error: FieldError) -> str:
    return str(error) if error.path.startswith("spec") else f"spec.{error}"


def _problem(problem: Unresolved, summary: str, errors: Sequence[FieldError | str]) -> Resolution:
    lines = [e if isinstance(e, str) else _at_spec(e) for e in errors]
    return Resolution(problem=problem, message=f"{summary}: " + "; ".join(lines), field_errors=lines)


def admitted(job: ResolvedJob, facts: ModelFacts | None) -> ResolvedJob:
    """The record of what runs from admission on: `job` with the commit its revision resolved to pinned."""
    if facts is None or not facts.revision_sha:
        return job
    return ResolvedJob.parse({**job.to_wire(), "revisionSha": facts.revision_sha})


def status_resolved(job: ResolvedJob, facts: ModelFacts | None = None, *, record: bool = False) -> Resolved:
    """`status.resolved`: what runs, with the preflight's model facts once known.

    With `record` (at admission), the whole resolution is stored too, with its digest: every
    attempt renders from that record from then on.
    """
    stored = admitted(job, facts) if record else None
    return Resolved(
        template=job.template.name,
        template_reasons=list(job.template_reasons),
        model_repo=job.model_repo,
        revision=job.revision,
        revision_sha=facts.revision_sha if facts else None,
        architecture=(facts.architectures[0] if facts.architectures else facts.model_type) if facts else None,
        parameters=facts.parameters if facts else None,
        max_positions=facts.max_positions if facts else None,
        model_shape=facts.shape if facts else None,
        from_checkpoint=job.from_checkpoint,
        nodes=job.nodes,
        gpus_per_node=job.gpus_per_node,
        image=job.image,
        hyperparameters=job.hyperparameters,
        lora=job.lora,
        record=stored,
        hash=stored.digest() if stored is not None else None,
        gpu_plan=job.gpu_plan,
    )
