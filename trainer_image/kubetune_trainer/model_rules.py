"""The compatibility rules a model must pass before any weight file moves.

Each rule reads only config.json and the repo's file list and gives a named outcome with a
message, so `kubetune check` can print them and the preflight can refuse with the first
failure. A failure is `InvalidInput` with a reason code, the spec field to change and how;
how a model differs from its template (family, size, sequence length) is a warning, never a
refusal.

    config           config.json is present and its model_type is one transformers knows
    remote-code      no auto_map custom code, unless the architecture is native (then ignored)
    causal-lm        the architecture is a causal language model
    parameters       at most 100B parameters, counted on the meta device
    safetensors      .safetensors weights present; pickles (.bin, .pt, ...) are never loaded
    transformers     config.json's transformers_version is not above the template's ceiling
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

import transformers
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, ValidationError
from transformers import CONFIG_MAPPING, AutoConfig, PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from . import compat, params
from .contract import ModelFacts, ModelShapeFacts, TemplateExpectations, WarningNote
from .errors import InvalidInput
from .memory_model import ModelShape, unmeasured_plan_warning

MAX_PARAMETERS = 100_000_000_000
"""The largest model kubetune fine-tunes."""

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
"""Weight formats that run arbitrary code when loaded: never downloaded, never loaded."""

MODEL_FIELD = "spec.fromHfModel"
REVISION_FIELD = "spec.hfModelRevision"
TEMPLATE_FIELD = "spec.model"

_CAUSAL_LM_CLASSES = frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())


class RuleStatus(enum.StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    """Passed, with something to know (e.g. auto_map ignored on a native architecture)."""
    FAIL = "FAIL"
    SKIP = "SKIP"
    """Not evaluated: an earlier rule failed and this one needs what it checks."""


class RuleOutcome(BaseModel):
    """One rule's verdict, as `kubetune check` prints it."""

    model_config = ConfigDict(frozen=True)

    rule: str
    status: RuleStatus
    message: str
    reason: str | None = None
    hint: str | None = None
    field: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is RuleStatus.FAIL

    def error(self) -> InvalidInput:
        return InvalidInput(self.message, reason=self.reason or "ModelRefused", hint=self.hint, field=self.field)


class ModelCheck(BaseModel):
    """Every rule's outcome for one repo revision, the facts found and the template warnings."""

    model_config = ConfigDict(frozen=True)

    repo: str
    revision_sha: str | None
    outcomes: list[RuleOutcome]
    facts: ModelFacts | None
    warnings: list[WarningNote]

    @property
    def passed(self) -> bool:
        return not any(o.failed for o in self.outcomes)

    def facts_or_raise(self) -> ModelFacts:
        """The model's facts when every rule passed; else the first failure as InvalidInput."""
        for outcome in self.outcomes:
            if outcome.failed:
                raise outcome.error()
        if self.facts is None:
            raise InvalidInput(
                f"{self.repo} has no readable config.json", reason="ModelConfigUnreadable", field=MODEL_FIELD
            )
        return self.facts


def evaluate(
    config: Mapping[str, Any] | None,
    files: Sequence[str],
    *,
    repo: str,
    revision_sha: str | None,
    template: TemplateExpectations | None,
    max_parameters: int = MAX_PARAMETERS,
) -> ModelCheck:
    """Run every rule on `config` (config.json, None when absent) and the repo's `files`."""
    where = f"{repo}@{revision_sha[:12]}" if revision_sha else repo
    outcomes: list[RuleOutcome] = []
    warnings: list[WarningNote] = []

    remote = _remote_code(config or {}, where=where)
    parsed, readable = _readable(config, where=where, remote_code_refused=remote.failed)
    outcomes += [readable, remote]
    causal = (
        _causal_lm(config or {}, where=where)
        if parsed is not None
        else _skip("causal-lm", "needs a readable config.json")
    )
    outcomes.append(causal)
    parameters: int | None = None
    if parsed is not None and not causal.failed and not remote.failed:
        parameters, counted = _size(parsed, where=where, limit=max_parameters)
        outcomes.append(counted)
    else:
        outcomes.append(_skip("parameters", "needs a readable causal-LM config"))
    outcomes.append(_safetensors(files, where=where))
    outcomes.append(_transformers_version(config or {}, where=where, template=template))
    if remote.status is RuleStatus.WARN:
        warnings.append(WarningNote(reason="RemoteCodeIgnored", message=remote.message))

    facts = None
    if parsed is not None and parameters is not None:
        facts = ModelFacts(
            model_type=parsed.model_type,
            architectures=list(parsed.architectures or []),
            parameters=parameters,
            max_positions=params.max_positions(parsed),
            shape=_shape(parsed.to_dict(), parameters),
            transformers_version=_declared_version(config or {}),
            revision_sha=revision_sha,
        )
        if template is not None:
            warnings += compat.mismatch_warnings(facts, template)
        unmeasured = unmeasured_plan_warning(facts.model_type)
        warnings += [unmeasured] if unmeasured is not None else []
    return ModelCheck(repo=repo, revision_sha=revision_sha, outcomes=outcomes, facts=facts, warnings=warnings)


def _shape(config: Mapping[str, Any], parameters: int) -> ModelShapeFacts | None:
    """The numbers the GPU planner sizes with, from the parsed config (transformers' defaults filled in where
    config.json leaves them out); None for a config that lacks them (the planner then uses the template's shape,
    or a Llama-like one of the model's size)."""
    try:
        return ModelShape.from_config(config, parameters=parameters).facts()
    except (KeyError, TypeError, ValueError, ZeroDivisionError, ValidationError):
        return None


def _skip(rule: str, why: str) -> RuleOutcome:
    return RuleOutcome(rule=rule, status=RuleStatus.SKIP, message=why)


def _fail(rule: str, message: str, *, reason: str, hint: str, field: str = MODEL_FIELD) -> RuleOutcome:
    return RuleOutcome(rule=rule, status=RuleStatus.FAIL, message=message, reason=reason, hint=hint, field=field)


_PICK_ANOTHER = f"Set {MODEL_FIELD} to a model whose architecture ships with transformers {transformers.__version__}"


def _native(model_type: object, architectures: Sequence[object]) -> bool:
    return model_type in CONFIG_MAPPING and all(isinstance(a, str) and hasattr(transformers, a) for a in architectures)


def _remote_code(config: Mapping[str, Any], *, where: str) -> RuleOutcome:
    auto_map = config.get("auto_map")
    if not auto_map:
        return RuleOutcome(rule="remote-code", status=RuleStatus.PASS, message="no auto_map: no custom code")
    architectures = config.get("architectures") or []
    if _native(config.get("model_type"), architectures):
        return RuleOutcome(
            rule="remote-code",
            status=RuleStatus.WARN,
            message=f"{where} declares auto_map custom code, but model_type {config.get('model_type')} ships with "
            f"transformers {transformers.__version__}: the built-in implementation is used and the custom code "
            "never runs",
        )
    return _fail(
        "remote-code",
        f"{where} declares auto_map (custom code for {', '.join(sorted(auto_map))}) and its architecture "
        f"{config.get('model_type')!s} is not one transformers {transformers.__version__} ships; kubetune never "
        "runs remote code",
        reason="RemoteCodeRefused",
        hint=f"{_PICK_ANOTHER} (trust_remote_code is always off).",
    )


def _readable(
    config: Mapping[str, Any] | None, *, where: str, remote_code_refused: bool
) -> tuple[PretrainedConfig | None, RuleOutcome]:
    if config is None:
        return None, _fail(
            "config",
            f"{where} has no config.json",
            reason="ModelConfigMissing",
            hint=f"Set {MODEL_FIELD} to a transformers model repo (with config.json) or a LoRA adapter repo "
            "(with adapter_config.json).",
        )
    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        if remote_code_refused:
            return None, _skip("config", f"model_type {model_type!s} is custom code (see remote-code)")
        return None, _fail(
            "config",
            f"{where} has model_type {model_type!s}, which transformers {transformers.__version__} does not know",
            reason="UnsupportedArchitecture",
            hint=f"{_PICK_ANOTHER}, or a template whose trainer image has a newer transformers.",
        )
    try:
        parsed: PretrainedConfig = AutoConfig.for_model(**dict(config))
    except (TypeError, ValueError, KeyError) as invalid:
        return None, _fail(
            "config",
            f"{where} config.json cannot be read as a {model_type} config: {invalid}",
            reason="ModelConfigUnreadable",
            hint=f"Fix the repo's config.json or set {MODEL_FIELD} to another model.",
        )
    return parsed, RuleOutcome(rule="config", status=RuleStatus.PASS, message=f"model_type {model_type}")


def _causal_lm(config: Mapping[str, Any], *, where: str) -> RuleOutcome:
    architectures = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    model_type = config.get("model_type")
    if architectures:
        causal = [a for a in architectures if a in _CAUSAL_LM_CLASSES or a.endswith("ForCausalLM")]
        ok = bool(causal)
        shown = ", ".join(architectures)
    else:
        ok = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        shown = f"model_type {model_type}"
    if ok:
        return RuleOutcome(rule="causal-lm", status=RuleStatus.PASS, message=f"{shown} is a causal language model")
    return _fail(
        "causal-lm",
        f"{where} is {shown}, not a causal language model (AutoModelForCausalLM); kubetune fine-tunes text "
        "generation models only",
        reason="NotCausalLM",
        hint=f"Set {MODEL_FIELD} to a *ForCausalLM model, e.g. a Llama, Qwen or Mistral checkpoint.",
    )


def _size(config: PretrainedConfig, *, where: str, limit: int) -> tuple[int | None, RuleOutcome]:
    try:
        count = params.count_parameters(config)
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as invalid:
        return None, _fail(
            "parameters",
            f"{where}: the model cannot be built from config.json: {type(invalid).__name__}: {invalid}",
            reason="ModelConfigUnreadable",
            hint=f"Fix the repo's config.json or set {MODEL_FIELD} to another model.",
        )
    shown = compat.human_count(count)
    if count > limit:
        return count, _fail(
            "parameters",
            f"{where} has {shown} parameters ({count:,}), above kubetune's limit of {compat.human_count(limit)}",
            reason="ModelTooLarge",
            hint=f"Set {MODEL_FIELD} to a model of at most {compat.human_count(limit)} parameters.",
        )
    return count, RuleOutcome(
        rule="parameters", status=RuleStatus.PASS, message=f"{shown} parameters, within {compat.human_count(limit)}"
    )


def is_pickle(path: str) -> bool:
    return path.lower().endswith(PICKLE_SUFFIXES)


def _safetensors(files: Sequence[str], *, where: str) -> RuleOutcome:
    weights = [f for f in files if f.endswith(".safetensors")]
    if weights:
        return RuleOutcome(rule="safetensors", status=RuleStatus.PASS, message=f"{len(weights)} .safetensors file(s)")
    pickles = sorted(f for f in files if is_pickle(f))
    found = (
        f"only pickle weights ({', '.join(pickles[:3])}{', ...' if len(pickles) > 3 else ''})"
        if pickles
        else ("no weight files")
    )
    return _fail(
        "safetensors",
        f"{where} has {found}; kubetune loads .safetensors only, since pickles can run code when loaded",
        reason="NoSafetensorsWeights",
        hint=f"Push the weights as .safetensors (save_pretrained writes them), or set {REVISION_FIELD} to a "
        f"revision that has them, or {MODEL_FIELD} to another repo.",
    )


def _declared_version(config: Mapping[str, Any]) -> str | None:
    value = config.get("transformers_version")
    return value if isinstance(value, str) else None


def _transformers_version(
    config: Mapping[str, Any], *, where: str, template: TemplateExpectations | None
) -> RuleOutcome:
    declared = _declared_version(config)
    ceiling = template.transformers_ceiling if template else transformers.__version__
    runs_on = f"template {template.name}'s ceiling" if template else "the installed transformers"
    if declared is None:
        return RuleOutcome(rule="transformers", status=RuleStatus.PASS, message="no transformers_version declared")
    try:
        newer = Version(declared) > Version(ceiling)
    except InvalidVersion:
        return RuleOutcome(
            rule="transformers",
            status=RuleStatus.WARN,
            message=f"transformers_version {declared!r} is not a version; cannot compare with {ceiling}",
        )
    if newer:
        return _fail(
            "transformers",
            f"{where} was saved by transformers {declared}, newer than {ceiling} ({runs_on}); it may use "
            "features this trainer cannot read",
            reason="TransformersTooOld",
            hint=f"Set {REVISION_FIELD} to an older revision of the model, or {TEMPLATE_FIELD} to a template whose "
            f"transformersCeiling is at least {declared}.",
            field=TEMPLATE_FIELD,
        )
    return RuleOutcome(
        rule="transformers", status=RuleStatus.PASS, message=f"saved by transformers {declared}, within {ceiling}"
    )
