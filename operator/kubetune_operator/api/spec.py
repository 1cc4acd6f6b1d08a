"""`FineTuneJob.spec`: what a user asks for, with Together's field names and defaults.

Hyperparameter and LoRA fields are optional: an absent value means "the template's default,
else the global default" (`DEFAULT_HYPERPARAMETERS`, Together's defaults), so a template can
tune defaults per model without a user's explicit value ever being overridden.
"""

from __future__ import annotations

import re
from typing import Annotated, Self

from pydantic import ConfigDict, Field, JsonValue, model_validator

from kubetune_trainer.contract import DEFAULT_DPO_BETA, LrScheduler, TrainingMethod, TrainOnInputs, WireModel

from .crossfield import Violation, raise_violations
from .fields import (
    BatchSize,
    CheckpointRef,
    CheckpointUri,
    DataUri,
    DnsSubdomain,
    GitRevision,
    HfRepoId,
    HttpUrl,
    LabelValueName,
    OutputUri,
    Region,
    SecretKey,
    Suffix,
)
from .kube_shapes import SecretKeyRef
from .pod_additions import PodAdditions
from .serve import SERVE_CEL_RULE, ServeSpec, output_violations

AUTO_TEMPLATE = "auto"


def _set_values(model: WireModel) -> dict[str, object]:
    """The fields of `model` that hold a value, as attributes (nested models stay models)."""
    return {name: value for name in type(model).model_fields if (value := getattr(model, name)) is not None}


class Hyperparameters(WireModel):
    """Training hyperparameters (Together's names). Absent: the template's default, else Together's."""

    n_epochs: int | None = Field(None, ge=1, le=1000, description="Passes over the training file. Default 1.")
    learning_rate: float | None = Field(
        None, gt=0.0, le=1.0, description="Peak learning rate, within the template's bounds. Default 1e-5."
    )
    batch_size: BatchSize | None = Field(
        None,
        description="Effective batch size in sequences per optimizer step, within the template's bounds, "
        "or `max` for the template's largest. Default max.",
    )
    lr_scheduler: LrScheduler | None = Field(
        None, description="Learning-rate schedule. Default cosine with minLrRatio 0 and numCycles 0.5."
    )
    warmup_ratio: float | None = Field(
        None, ge=0.0, le=1.0, description="Fraction of steps spent warming up, 0 to 1. Default 0."
    )
    max_grad_norm: float | None = Field(
        None, ge=0.0, description="Gradient clipping norm; 0 disables clipping. Default 1."
    )
    weight_decay: float | None = Field(None, ge=0.0, description="AdamW weight decay. Default 0.")
    n_checkpoints: int | None = Field(
        None, ge=1, le=1000, description="Checkpoints written over training, the last at the end. Default 1."
    )
    n_evals: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="Evaluations of validationFile over training; needs validationFile when above 0. Default 0.",
    )
    train_on_inputs: TrainOnInputs | None = Field(
        None,
        description="Whether prompt tokens count in the loss: true, false, or auto (prompts masked for "
        "messages and prompt/completion data, nothing masked for text). Default auto.",
    )
    max_seq_length: int | None = Field(
        None,
        ge=32,
        le=1048576,
        description="Longest sequence trained, in tokens; never above the model's own maximum. "
        "Default: the template's maximum sequence length.",
    )
    packing: bool | None = Field(
        None, description="Pack several examples into one sequence, without attention across them. Default true."
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Random seed. Default 42.")
    auto_batch_on_oom: bool | None = Field(
        None,
        alias="autoBatchOnOOM",
        description="On out-of-memory in a training step, retry it in micro-batches of half the tokens (twice the "
        "gradient accumulation, the same effective batch and loss), down to one example per micro-batch; "
        "single-process runs only. Default true.",
    )
    dpo_beta: float | None = Field(
        None,
        gt=0.0,
        le=10.0,
        description="trainingMethod dpo: how far the model may move from the reference (DPO's beta), above 0. "
        f"Default {DEFAULT_DPO_BETA}.",
    )
    rpo_alpha: float | None = Field(
        None,
        ge=0.0,
        le=100.0,
        description="trainingMethod dpo: weight of RPO's NLL term on the preferred output; 0 leaves it out. Default 0.",
    )
    simpo_gamma: float | None = Field(
        None,
        ge=0.0,
        le=100.0,
        description="trainingMethod dpo: SimPO's target reward margin; above 0 turns SimPO on, which is "
        "reference-free and length-normalised. Default 0.",
    )
    dpo_reference_free: bool | None = Field(
        None,
        description="trainingMethod dpo: no reference model (the margin is the model's own log-ratio). Default false.",
    )
    dpo_normalize_logratios_by_length: bool | None = Field(
        None,
        description="trainingMethod dpo: divide each output's log-probability by its token count. Default false.",
    )

    def layered_over(self, base: Hyperparameters) -> Hyperparameters:
        """These values where set, `base`'s where not."""
        return base.model_copy(update=_set_values(self))


DEFAULT_HYPERPARAMETERS = Hyperparameters(
    n_epochs=1,
    learning_rate=1e-5,
    batch_size="max",
    lr_scheduler=LrScheduler(),
    warmup_ratio=0.0,
    max_grad_norm=1.0,
    weight_decay=0.0,
    n_checkpoints=1,
    n_evals=0,
    train_on_inputs="auto",
    packing=True,
    seed=42,
    auto_batch_on_oom=True,
)
"""Together's defaults: what a job gets where neither it nor its template says otherwise."""


class LoraSpec(WireModel):
    """LoRA fine-tuning. Absent values: the template's LoRA defaults, else these defaults."""

    enabled: bool | None = Field(None, description="Train a LoRA adapter instead of every weight. Default true.")
    r: int | None = Field(None, ge=1, le=1024, description="Adapter rank. Default: the template's maximum rank.")
    alpha: int | None = Field(None, ge=1, le=4096, description="Scaling numerator (alpha / r). Default 2 x r.")
    dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="Dropout on the adapter input, in [0, 1). Default 0."
    )
    target_modules: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Modules to adapt, from the template's list; `all-linear` for every linear layer. "
        "Default all-linear.",
    )
    merge: bool | None = Field(None, description="Also save a full model with the adapter merged in. Default true.")

    def layered_over(self, base: LoraSpec) -> LoraSpec:
        return base.model_copy(update=_set_values(self))

    def alpha_for(self, r: int) -> int:
        """The alpha that runs with rank `r`: the one given, else 2 x r (Together's default)."""
        return self.alpha if self.alpha is not None else 2 * r


DEFAULT_LORA = LoraSpec(enabled=True, dropout=0.0, target_modules=["all-linear"], merge=True)
"""Together trains LoRA unless told otherwise; alpha defaults to 2 x r, r to the template's max rank."""


class WandbSpec(WireModel):
    """Weights & Biases logging."""

    api_key_secret_ref: SecretKeyRef = Field(description="Secret key holding the W&B API key.")
    project: str | None = Field(None, min_length=1, max_length=128, description="Project. Default kubetune.")
    entity: str | None = Field(None, min_length=1, max_length=128, description="Team or user.")
    name: str | None = Field(None, min_length=1, max_length=128, description="Run name. Default: the job name.")
    base_url: HttpUrl | None = Field(None, description="W&B server URL, for self-hosted installs.")


class OutputSpec(WireModel):
    """Where the trained model goes."""

    uri: OutputUri = Field(description="pvc://claim/path, s3://bucket/prefix, hf://org/repo or a path.")
    private: bool = Field(True, description="Create a Hugging Face output repo as private. Default true.")


class CheckpointSpec(WireModel):
    """Where checkpoints live, so retries and preemptions resume instead of starting over."""

    uri: CheckpointUri = Field(description="pvc://claim/path (ReadWriteMany for multi-node) or s3://bucket/prefix.")


class S3CredentialsSecretRef(WireModel):
    """A Secret of the job's namespace holding S3-style keys. The operator never reads it; pods get it as env."""

    name: DnsSubdomain = Field(description="Name of the Secret, in the FineTuneJob's namespace.")
    access_key_id_key: SecretKey = Field(
        "AWS_ACCESS_KEY_ID", description="Key holding the access key id. Default AWS_ACCESS_KEY_ID."
    )
    secret_access_key_key: SecretKey = Field(
        "AWS_SECRET_ACCESS_KEY", description="Key holding the secret access key. Default AWS_SECRET_ACCESS_KEY."
    )
    session_token_key: SecretKey | None = Field(
        None, description="Key holding a session token, for temporary credentials. Default: none."
    )


ENDPOINT_CREDENTIALS = (
    "credentials written into endpointUrl are refused: they would be stored in the job and shown by kubectl; "
    "remove the user:password@ part and put the keys in a Secret named by storage.s3.credentialsSecretRef"
)
_ENDPOINT_CREDENTIALS_CEL = "^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*@"
"""An endpoint whose authority holds `user[:password]@`: the same test in CEL and in Python."""
_ENDPOINT_CREDENTIALS = re.compile(_ENDPOINT_CREDENTIALS_CEL)


class S3StorageSpec(WireModel):
    """How pods reach s3:// data, checkpoints and outputs: AWS S3, MinIO, Ceph RGW or another S3-style store."""

    # Object-level (not a pattern on the field), so the API server's message never holds the value.
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"!has(self.endpointUrl) || !self.endpointUrl.matches('{_ENDPOINT_CREDENTIALS_CEL}')",
                    "message": f"endpointUrl: {ENDPOINT_CREDENTIALS}",
                    "fieldPath": ".endpointUrl",
                    "reason": "FieldValueForbidden",
                }
            ]
        }
    )

    credentials_secret_ref: S3CredentialsSecretRef | None = Field(
        None,
        description="Secret with the access keys. Default: none (node IAM, IRSA or Workload Identity "
        "through the operator's serviceAccountAnnotations).",
    )
    endpoint_url: HttpUrl | None = Field(
        None, description="Endpoint of a non-AWS store, e.g. http://minio.storage:9000. Default: AWS S3."
    )
    region: Region | None = Field(None, description="Region of the bucket, e.g. us-east-1. Default: the SDK's.")

    @model_validator(mode="after")
    def _refuse_credentials_in_the_endpoint(self) -> Self:
        if self.endpoint_url is not None and _ENDPOINT_CREDENTIALS.match(self.endpoint_url):
            shown = _ENDPOINT_CREDENTIALS.sub(
                lambda m: m.group(0).split("://")[0] + "://<redacted>@", self.endpoint_url
            )
            raise_violations("S3StorageSpec", [Violation(("endpointUrl",), shown, ENDPOINT_CREDENTIALS)])
        return self


class StorageSpec(WireModel):
    """Object-store access shared by every s3:// URI of the job (trainingFile, validationFile, output, checkpoint)."""

    s3: S3StorageSpec | None = Field(None, description="S3-style credentials, endpoint and region.")


FROM_CHECKPOINT_EXCLUSIVE = (
    "fromCheckpoint and fromHfModel exclude each other: continue a job's checkpoint, "
    "or start from a Hugging Face model, not both"
)
N_EVALS_NEEDS_VALIDATION = "nEvals above 0 needs validationFile: set validationFile, or nEvals: 0"
DPO_FIELDS = ("dpoBeta", "rpoAlpha", "simpoGamma", "dpoReferenceFree", "dpoNormalizeLogratiosByLength")
DPO_FIELDS_NEED_DPO = "only trainingMethod dpo takes this field: set trainingMethod: dpo, or remove it"
AUTO_NEEDS_HF_MODEL = (
    "model: auto chooses a template for fromHfModel: set fromHfModel, or name a template "
    "(e.g. togethercomputer/llama-2-7b-chat) to train its own model"
)

CREDENTIALS_IN_URI = (
    "credentials written into a URI are refused: they would be stored in the job and shown by kubectl; "
    "remove the user:password@ part and give the storage's keys through a Secret (hfTokenSecretRef for hf://; "
    "for s3://, storage.s3.credentialsSecretRef, or the pods' ServiceAccount (IRSA, Workload Identity))"
)
_CREDENTIALS_CEL = "^([a-z0-9+.-]+://)[^/]*@"
"""A URI whose authority holds `user[:password]@`: the same test in CEL and in Python."""
_CREDENTIALS = re.compile(_CREDENTIALS_CEL)
URI_FIELDS: tuple[tuple[str, ...], ...] = (
    ("trainingFile",),
    ("validationFile",),
    ("output", "uri"),
    ("checkpoint", "uri"),
)


def _credentials_rule(path: tuple[str, ...]) -> JsonValue:
    field = "self." + ".".join(path)
    present = " && ".join(f"has(self.{'.'.join(path[: i + 1])})" for i in range(len(path)))
    return {
        "rule": f"!({present}) || !{field}.matches('{_CREDENTIALS_CEL}')",
        "message": f"{'.'.join(path)}: {CREDENTIALS_IN_URI}",
        "fieldPath": "." + ".".join(path),
        "reason": "FieldValueForbidden",
    }


CEL_RULES: list[JsonValue] = [
    {
        "rule": "self.model != 'auto' || has(self.fromHfModel)",
        "message": AUTO_NEEDS_HF_MODEL,
        "fieldPath": ".model",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": "!(has(self.fromCheckpoint) && has(self.fromHfModel))",
        "message": FROM_CHECKPOINT_EXCLUSIVE,
        "fieldPath": ".fromCheckpoint",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": "!has(self.hyperparameters) || !has(self.hyperparameters.nEvals) "
        "|| self.hyperparameters.nEvals == 0 || has(self.validationFile)",
        "message": N_EVALS_NEEDS_VALIDATION,
        "fieldPath": ".hyperparameters.nEvals",
        "reason": "FieldValueRequired",
    },
    *(_credentials_rule(path) for path in URI_FIELDS),
    SERVE_CEL_RULE,
]
CEL_RULES.extend(
    {
        "rule": f"self.trainingMethod == 'dpo' || !has(self.hyperparameters) || !has(self.hyperparameters.{name})",
        "message": f"hyperparameters.{name}: {DPO_FIELDS_NEED_DPO}",
        "fieldPath": f".hyperparameters.{name}",
        "reason": "FieldValueForbidden",
    }
    for name in DPO_FIELDS
)
"""The cross-field rules of `cross_field_violations`, in CEL for the API server."""


class FineTuneJobSpec(WireModel):
    """A fine-tuning job: which template, which model, which data, which hyperparameters."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": CEL_RULES})

    model: str = Field(
        min_length=1,
        max_length=253,
        description="Base-model template: a BaseModelTemplate name, one of its aliases "
        "(e.g. togethercomputer/llama-2-7b-chat), or `auto` to pick the closest for fromHfModel.",
    )
    from_hf_model: HfRepoId | None = Field(
        None, description="Hugging Face repo really trained. Default: the template's own hfModel."
    )
    hf_model_revision: GitRevision | None = Field(
        None, description="Commit, branch or tag of fromHfModel. Default main; the resolved sha is recorded."
    )
    hf_token_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret key holding a Hugging Face token, for private or gated repos and hf:// output."
    )
    training_file: DataUri = Field(description="Training data (JSONL or Parquet).")
    validation_file: DataUri | None = Field(None, description="Validation data, used when nEvals is above 0.")
    training_method: TrainingMethod = Field(
        TrainingMethod.SFT,
        description="Training method: sft (supervised fine-tuning) or dpo (preference tuning on pairs of a "
        "preferred and a non-preferred output; hyperparameters dpoBeta, rpoAlpha, simpoGamma, dpoReferenceFree). "
        "Default sft.",
    )
    gpus: int | None = Field(
        None,
        ge=1,
        le=2048,
        description="GPUs the job holds, when more than the GPU planner sizes for the model: 1 to the template's "
        "gpusPerNode, or whole nodes of it, up to its nodes x gpusPerNode. Default: the fewest that fit. Changed "
        "on a started job, it resizes the next attempt (a retry or a resume): 1 up to the GPUs per node it runs "
        "on, or whole nodes of them up to the template's maximum, as long as the model fits.",
    )
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters, description="Training hyperparameters.")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA settings. LoRA is on by default.")
    suffix: Suffix | None = Field(
        None, description="Up to 40 characters appended to the output model name: <model>-<suffix>."
    )
    wandb: WandbSpec | None = Field(None, description="Weights & Biases logging.")
    output: OutputSpec | None = Field(None, description="Where the trained model goes. Default: the operator's.")
    checkpoint: CheckpointSpec | None = Field(None, description="Where checkpoints live. Default: the template's.")
    storage: StorageSpec | None = Field(
        None, description="Object-store credentials, endpoint and region for s3:// URIs. Default: none."
    )
    from_checkpoint: CheckpointRef | None = Field(
        None, description="Continue from another FineTuneJob's checkpoint: `<job>` or `<job>:<step>`."
    )
    pod: PodAdditions | None = Field(
        None,
        description="Extra env, PersistentVolumeClaims, tolerations and node affinity for the job's pods, as far as "
        "the operator's settings allow (podEnvAllowed, podVolumeClaimsAllowed, podTolerationsAllowed, "
        "podAffinityAllowed). Default: none.",
    )
    suspend: bool = Field(False, description="True removes the pods and pauses the job; false resumes it.")
    cancel: bool = Field(
        False,
        description="True cancels the job for good: its pods are removed, phase Cancelled, the record and its "
        "checkpoints are kept (fromCheckpoint continues from them). Cannot be set back to false.",
    )
    max_retries: int = Field(2, ge=0, le=20, description="Retries of retryable failures. Default 2.")
    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Fail the job when it has run longer than this."
    )
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description="Delete the FineTuneJob this long after it finished."
    )
    queue_name: LabelValueName | None = Field(
        None, description="Kueue LocalQueue that admits the job (a label value: 63 characters at most)."
    )
    priority_class_name: DnsSubdomain | None = Field(None, description="PriorityClass of the trainer pods.")
    serve: ServeSpec | None = Field(
        None,
        description="Serve the model once the job has Succeeded: a KServe InferenceService or a vLLM Deployment "
        "and Service (status.serving). Default: not served.",
    )

    @model_validator(mode="after")
    def _check_cross_field_rules(self) -> Self:
        raise_violations("FineTuneJobSpec", cross_field_violations(self))
        return self


def cross_field_violations(spec: FineTuneJobSpec) -> list[Violation]:
    """The rules no single field can state; each violation names the field to change."""
    found: list[Violation] = []
    if spec.model == AUTO_TEMPLATE and spec.from_hf_model is None:
        found.append(Violation(("model",), spec.model, AUTO_NEEDS_HF_MODEL))
    if spec.from_checkpoint is not None and spec.from_hf_model is not None:
        found.append(
            Violation(
                ("fromCheckpoint",),
                spec.from_checkpoint,
                FROM_CHECKPOINT_EXCLUSIVE,
            )
        )
    if spec.training_method is not TrainingMethod.DPO:
        hyper = spec.hyperparameters
        for name in DPO_FIELDS:
            value = getattr(hyper, _snake(name))
            if value is not None:
                found.append(Violation(("hyperparameters", name), value, DPO_FIELDS_NEED_DPO))
    n_evals = spec.hyperparameters.n_evals
    if n_evals and spec.validation_file is None:
        found.append(
            Violation(
                ("hyperparameters", "nEvals"),
                n_evals,
                N_EVALS_NEEDS_VALIDATION,
            )
        )
    found.extend(output_violations(spec.serve, spec.output.uri if spec.output is not None else None))
    for path in URI_FIELDS:
        node: object = spec
        for name in path:
            node = getattr(node, _snake(name), None) if node is not None else None
        if isinstance(node, str) and _CREDENTIALS.match(node):
            found.append(Violation(path, _CREDENTIALS.sub(r"\1<redacted>@", node, count=1), CREDENTIALS_IN_URI))
    return found


def _snake(camel: str) -> str:
    return "".join(f"_{char.lower()}" if char.isupper() else char for char in camel)
