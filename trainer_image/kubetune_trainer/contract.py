"""The operator-trainer contract: the one module both sides import.

It holds what crosses the boundary between the operator and a trainer pod: the stage and
error-class vocabularies, the `TrainerConfig` the operator writes into a ConfigMap, the
`ProgressReport` rank 0 patches into the FineTuneJob's status, and the `Result` written to
the termination log. It imports neither torch nor kopf (an import-linter contract checks
this), so the operator never needs the ML stack to speak it.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel

TERMINATION_MESSAGE_LIMIT = 4096
"""Kubernetes keeps at most 4096 bytes of a container's termination message."""
SERVICE_ACCOUNT_DIR_ENV = "KUBETUNE_SERVICE_ACCOUNT_DIR"
"""Where the pod's ServiceAccount files are, when not at Kubernetes' fixed path (the sandbox sets it)."""


def format_kube_time(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, to the second: the form Kubernetes itself writes."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


KubeTime = Annotated[datetime, PlainSerializer(format_kube_time, return_type=str, when_used="json")]


class WireModel(BaseModel):
    """Base of every model that crosses a boundary: frozen, strict about keys and types, camelCase.

    Strict mode makes pydantic accept exactly what the generated JSON schema accepts: no
    string "8" for an integer, no "true" for a boolean. Parse raw data with `parse` (JSON
    mode, where enum values and RFC 3339 times are accepted as strings).
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        alias_generator=to_camel,
        populate_by_name=True,
    )

    @classmethod
    def parse(cls, data: Any) -> Self:
        """Validate JSON-shaped data (a dict from YAML, JSON or the Kubernetes API).

        Only the camelCase names are accepted here, as in the CRD schema; the snake_case
        attribute names are for Python code constructing models.
        """
        return cls.model_validate_json(json.dumps(data, default=str), by_alias=True, by_name=False)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict with camelCase keys and unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Stage(enum.StrEnum):
    """The trainer's stages, in the order they run."""

    DATA_DOWNLOAD = "DataDownload"
    INITIALIZATION = "Initialization"
    TRAINING = "Training"
    SAVING = "Saving"
    UPLOAD = "Upload"


class ErrorClass(enum.StrEnum):
    """Why a job failed, in the vocabulary users see in `status.error.class`."""

    INTERNAL = "Internal"
    CUDA_OOM = "CudaOOM"
    VALUE_ERROR = "ValueError"
    RUNTIME_ERROR = "RuntimeError"
    INVALID_INPUT = "InvalidInput"


HOST_OUT_OF_MEMORY = "HostOutOfMemory"
"""The one reason for a pod out of host (CPU) memory, whoever saw it: the trainer (MemoryError) or the
kubelet (OOMKilled). Class CudaOOM, Together's out-of-memory class, not retried: the same memory fails again."""
HOST_OUT_OF_MEMORY_HINT = (
    "The pod ran out of host (CPU) memory: raise the template's resources.memory, lower "
    "hyperparameters.batchSize or maxSeqLength, or enable lora."
)


class StageState(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class LrSchedulerType(enum.StrEnum):
    LINEAR = "linear"
    COSINE = "cosine"
    CONSTANT = "constant"


class LrScheduler(WireModel):
    """Learning-rate schedule after warmup (Together's `lr_scheduler`)."""

    type: LrSchedulerType = Field(
        LrSchedulerType.COSINE,
        description="Schedule after warmup: linear, cosine or constant. Default cosine, as Together.",
    )
    min_lr_ratio: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Final learning rate as a fraction of the peak, from 0 to 1. Default 0.",
    )
    num_cycles: float = Field(
        0.5,
        gt=0.0,
        le=100.0,
        description="Cosine cycles over training (0.5 is a half cosine down to the minimum). Default 0.5.",
    )


TrainOnInputs = Annotated[
    bool | Literal["auto"],
    # A Kubernetes structural schema cannot say "bool or string"; keep the value as given.
    WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True, "enum": [True, False, "auto"]}),
]


class TrainingMethod(enum.StrEnum):
    """Together's training methods: supervised fine-tuning, or preference tuning on pairs."""

    SFT = "sft"
    DPO = "dpo"


DEFAULT_DPO_BETA = 0.1
"""Together's default `dpo_beta`."""


class DpoSettings(WireModel):
    """Preference tuning as it runs (Together's `training_method: dpo` fields, resolved)."""

    beta: float = Field(
        DEFAULT_DPO_BETA, gt=0.0, le=10.0, description="DPO beta: how far the policy may move from the reference."
    )
    rpo_alpha: float = Field(
        0.0, ge=0.0, le=100.0, description="Weight of RPO's NLL term on the preferred output; 0 leaves it out."
    )
    simpo_gamma: float = Field(
        0.0, ge=0.0, le=100.0, description="SimPO's target margin; above 0 turns SimPO on (reference-free, normalised)."
    )
    reference_free: bool = Field(False, description="No reference model: the margin is the policy's own.")
    normalize_logratios_by_length: bool = Field(
        False, description="Divide each output's log-probability by its token count (SimPO's rule)."
    )


class TrainingHyperparameters(WireModel):
    """Hyperparameters as they really run: every value concrete, `batchSize: max` resolved."""

    n_epochs: int = Field(ge=1, description="Passes over the training file.")
    learning_rate: float = Field(gt=0.0, description="Peak learning rate.")
    batch_size: int = Field(ge=1, description="Effective batch size, in sequences per optimizer step.")
    lr_scheduler: LrScheduler = Field(description="Learning-rate schedule after warmup.")
    warmup_ratio: float = Field(ge=0.0, le=1.0, description="Fraction of steps spent warming up.")
    max_grad_norm: float = Field(ge=0.0, description="Gradient clipping norm; 0 disables clipping.")
    weight_decay: float = Field(ge=0.0, description="AdamW weight decay.")
    n_checkpoints: int = Field(ge=1, description="Checkpoints written over training.")
    n_evals: int = Field(ge=0, description="Evaluations of the validation file over training.")
    train_on_inputs: TrainOnInputs = Field(
        description="Whether prompt tokens count in the loss; auto masks prompts except for text data."
    )
    max_seq_length: int = Field(ge=1, description="Longest sequence trained, in tokens.")
    packing: bool = Field(description="Pack several examples into one sequence, without attention across them.")
    seed: int = Field(ge=0, le=2**32 - 1, description="Random seed for data order and initialisation.")
    auto_batch_on_oom: bool = Field(
        True,
        alias="autoBatchOnOOM",
        description="On out-of-memory, retry the step in micro-batches of half the tokens (more gradient "
        "accumulation, the same effective batch), down to one example per micro-batch.",
    )
    training_method: TrainingMethod = Field(TrainingMethod.SFT, description="sft or dpo.")
    dpo: DpoSettings | None = Field(None, description="Preference-tuning settings; present exactly when dpo.")


class LoraConfig(WireModel):
    """LoRA as it really runs."""

    r: int = Field(ge=1, description="Rank of the adapter matrices.")
    alpha: int = Field(ge=1, description="Scaling numerator; the adapter is scaled by alpha / r.")
    dropout: float = Field(ge=0.0, lt=1.0, description="Dropout on the adapter input.")
    target_modules: list[str] = Field(min_length=1, description="Modules adapted; `all-linear` for every linear layer.")
    merge: bool = Field(description="Also save a full model with the adapter merged in.")


class ModelShapeFacts(WireModel):
    """The config.json numbers device memory depends on (`memory_model.ModelShape`, less the parameter count).

    The GPU planner sizes a job with them: the activations per token follow the layers' widths, the
    experts a token is routed to and the vocabulary, which a parameter count alone does not say.
    """

    hidden_size: int = Field(ge=1, description="config.json `hidden_size`.")
    num_layers: int = Field(ge=1, description="Decoder layers (`num_hidden_layers`).")
    intermediate_size: int = Field(ge=1, description="The MLP's width; in a mixture of experts one expert's.")
    num_heads: int = Field(ge=1, description="Attention heads.")
    num_kv_heads: int = Field(ge=1, description="Key and value heads (grouped-query attention).")
    vocab_size: int = Field(ge=1, description="Vocabulary size.")
    head_dim: int = Field(ge=1, description="Width of one attention head.")
    tied_embeddings: bool = Field(description="Whether the output head shares the input embeddings.")
    num_experts: int = Field(0, ge=0, description="Experts in each mixture-of-experts MLP; 0 for a dense MLP.")
    active_experts: int = Field(0, ge=0, description="Experts each token is routed to.")
    qk_norm: bool = Field(False, description="Whether each attention head's query and key are RMS-normalised.")
    sandwich_norms: bool = Field(False, description="Whether each layer has four norms (Gemma 2 and 3), not two.")
    gemma_norms: bool = Field(False, description="Whether the norms compute in fp32 and scale by (1 + weight).")
    softcapped_attention: bool = Field(
        False, description="Whether attention logits are soft-capped (Gemma 2): attention keeps its scores then."
    )
    fused_qkv: bool = Field(False, description="Whether query, key and value come from one fused projection (Phi-3).")
    shared_expert_intermediate_size: int = Field(
        0, ge=0, description="A mixture of experts' shared expert's width (Qwen2-MoE); 0: none."
    )
    lora_adapts_experts: bool = Field(
        False, description="Whether LoRA's all-linear adapts the stacked experts and the router (Mixtral, Qwen3-MoE)."
    )
    dense_layers: int = Field(
        0, ge=0, description="In a mixture of experts, the layers whose MLP is dense (DeepSeek, some Qwen MoEs)."
    )
    dense_intermediate_size: int = Field(0, ge=0, description="Those dense layers' MLP width.")


class TemplateExpectations(WireModel):
    """What the chosen template expects of the model, for the trainer's mismatch warnings."""

    name: str = Field(description="BaseModelTemplate object name.")
    family: str = Field(description="Architecture family, e.g. llama.")
    model_types: list[str] = Field(description="Accepted config.json `model_type` values.")
    architectures: list[str] = Field(description="Accepted config.json `architectures` entries.")
    parameters: int = Field(ge=1, description="The template's parameter count.")
    max_seq_length: int = Field(ge=1, description="The template's maximum sequence length.")
    transformers_ceiling: str = Field(
        description="Newest `transformers_version` a checkpoint may declare for this template."
    )
    shape: ModelShapeFacts | None = Field(None, description="The template model's shape, when the template names it.")


class ModelSource(WireModel):
    repo: str = Field(description="Hugging Face repo id really trained.")
    revision: str = Field("main", description="Commit, branch or tag requested.")
    token_env: str | None = Field(
        None, description="Name of the environment variable holding the HF token, if any; never the token."
    )
    template: TemplateExpectations = Field(description="The template the job runs under.")


class DataSource(WireModel):
    training_file: str = Field(description="URI or path of the training file.")
    validation_file: str | None = Field(None, description="URI or path of the validation file.")
    pvc_mount_root: str = Field(
        "/mnt/pvc", description="Where PersistentVolumeClaims are mounted: pvc://claim/path -> <root>/claim/path."
    )


class OutputTarget(WireModel):
    uri: str = Field(description="Where the trained model is uploaded.")
    model_name: str = Field(description="Name of the output model, from the model and the suffix.")
    private: bool = Field(True, description="Create Hugging Face output repos as private.")


class Precision(enum.StrEnum):
    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"


class MasterWeights(enum.StrEnum):
    """How bf16 training keeps the weights the optimizer updates (docs/training.md has the measurements).

    At learning rates near 1e-5 most AdamW updates are smaller than half a bf16 step of the
    weight they apply to and are rounded away in pure bf16.
    """

    FP32 = "fp32"
    """bf16 weights and compute; the optimizer keeps an fp32 master copy and writes it back rounded."""
    BF16_COMPENSATED = "bf16-compensated"
    """bf16 weights and compute; the optimizer keeps each weight's rounding error (bf16) and adds it back."""
    BF16 = "bf16"
    """Pure bf16: updates below half a bf16 step are lost."""


class Strategy(enum.StrEnum):
    DDP = "ddp"
    FSDP = "fsdp"


class AttentionKernel(enum.StrEnum):
    """How packed rows attend, each example only to itself: never through a dense mask."""

    AUTO = "auto"
    """varlen where torch and the GPU have it, else flex, else sdpa (the only one on a CPU)."""
    VARLEN = "varlen"
    """torch's variable-length flash kernel over the packing's document boundaries (CUDA)."""
    FLEX = "flex"
    """compiled flex_attention with a document BlockMask built once per micro-batch (CUDA)."""
    SDPA = "sdpa"
    """scaled_dot_product_attention once per packed example (any device)."""


DEFAULT_STEP_WATCHDOG_FLOOR_SECONDS = 900.0
"""No training step for this long is a stall, however fast steps were (see kubetune_trainer.watchdog)."""


class RuntimeSettings(WireModel):
    precision: Precision = Field(Precision.BF16, description="Training precision on GPU; CPU runs use fp32.")
    master_weights: MasterWeights = Field(
        MasterWeights.FP32,
        description="With bf16 precision on GPU: fp32 (an fp32 master copy in the optimizer), bf16-compensated "
        "(each weight's rounding error kept and added back) or bf16 (pure bf16, small updates lost).",
    )
    strategy: Strategy = Field(Strategy.DDP, description="Data-parallel strategy across processes.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    attention: AttentionKernel = Field(
        AttentionKernel.AUTO,
        description="Attention kernel for packed rows: auto, varlen, flex or sdpa. One the device cannot run falls "
        "back (warning AttentionFallback).",
    )
    compile: bool = Field(
        False,
        description="torch.compile the decoder layers on a GPU (a CPU run stays eager); if compilation fails, "
        "eager (warning CompileFallback).",
    )
    checkpoint_uri: str | None = Field(None, description="Where checkpoints outlive pods; absent: retries start over.")
    checkpoint_root: str | None = Field(
        None,
        description="The location holding one `<root>/<job>/` checkpoint directory per job, this job's and the "
        "one fromCheckpoint names; set by the operator. Absent (older configs): derived from checkpointUri.",
    )
    resume_from: str | None = Field(None, description="Checkpoint to start from (fromCheckpoint), `<job>[:<step>]`.")
    from_checkpoint: str | None = Field(
        None,
        description="The job's own fromCheckpoint (`<job>[:<step>]`): where a retry starts when its own job "
        "has no checkpoint yet.",
    )
    reshard_on_resume: bool = Field(
        True,
        description="Resume this job's own checkpoint on another number of processes (nodes x GPUs) by "
        "resharding it on load; false: a checkpoint of another world size is refused.",
    )
    checkpoint_grace_seconds: float = Field(
        25.0,
        ge=0.0,
        description="Seconds after SIGTERM within which the trainer checkpoints and ends with a Result; "
        "the pod's terminationGracePeriodSeconds must be longer.",
    )
    cache_dir: str = Field("/cache/hf", description="Hugging Face cache directory.")
    work_dir: str = Field("/work", description="Scratch directory for data and outputs before upload.")
    step_watchdog_floor_seconds: float = Field(
        DEFAULT_STEP_WATCHDOG_FLOOR_SECONDS,
        gt=0.0,
        description="The step watchdog fails a run as Internal/Stalled (retried) when no training step completes "
        "within max(10 x the median step time, this many seconds); it alone bounds the first step.",
    )


class ReportTarget(WireModel):
    kind: Literal["kubernetes", "terminal", "none"] = Field(description="Where progress goes.")
    min_interval_seconds: float = Field(5.0, ge=0.0, description="Least time between two progress reports.")


class WandbTarget(WireModel):
    project: str = Field(description="Weights & Biases project.")
    entity: str | None = Field(None, description="Weights & Biases entity (team or user).")
    name: str | None = Field(None, description="Run name.")
    base_url: str | None = Field(None, description="Weights & Biases server, for self-hosted installs.")
    api_key_env: str = Field(description="Name of the environment variable holding the API key; never the key.")


class JobIdentity(WireModel):
    namespace: str = Field(description="Namespace of the FineTuneJob.")
    name: str = Field(description="Name of the FineTuneJob.")
    uid: str = Field(description="UID of the FineTuneJob, for reports and error hints.")
    attempt: int = Field(1, ge=1, description="Attempt number, 1 for the first run.")


class TrainerConfig(WireModel):
    """Everything a trainer pod needs, written by the operator into the job's ConfigMap."""

    job: JobIdentity = Field(description="Which FineTuneJob this run belongs to.")
    model: ModelSource = Field(description="The model really trained and its template.")
    data: DataSource = Field(description="Training and validation data.")
    hyperparameters: TrainingHyperparameters = Field(description="Resolved hyperparameters.")
    lora: LoraConfig | None = Field(None, description="LoRA settings; absent for full fine-tuning.")
    output: OutputTarget = Field(description="Where the trained model goes.")
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings, description="Precision, strategy, paths.")
    report: ReportTarget = Field(description="Where progress is reported.")
    wandb: WandbTarget | None = Field(None, description="Weights & Biases logging, when enabled.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Port for Prometheus metrics on rank 0; 0 disables.")
    termination_log_path: str = Field("/dev/termination-log", description="Where the final Result is written.")

    def to_json(self) -> str:
        return json.dumps(self.to_wire(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.model_validate_json(text, by_alias=True, by_name=False)


class StageRecord(WireModel):
    """One stage of one attempt, as shown in `status.stages`."""

    name: Stage = Field(description="The stage.")
    state: StageState = Field(description="Pending, Running, Succeeded or Failed.")
    start_time: KubeTime | None = Field(None, description="When the stage started.")
    end_time: KubeTime | None = Field(None, description="When the stage ended.")
    message: str | None = Field(None, max_length=1024, description="What the stage did or why it failed.")
    training_tokens: int | None = Field(
        None,
        ge=0,
        description="DataDownload only: tokens of the training file as tokenized for this run (one epoch, after "
        "truncation to maxSeqLength); the operator's GPU-hour estimate (status.estimate) rests on it.",
    )


class PreferenceProgress(WireModel):
    """Preference-tuning metrics of the last step (trainingMethod dpo), means over its pairs."""

    reward_accuracy: float = Field(
        ge=0.0, le=1.0, description="Share of pairs whose preferred output has the higher reward."
    )
    reward_margin: float = Field(description="Mean of preferred minus non-preferred reward (beta times the log-ratio).")
    chosen_logps: float = Field(description="Mean log-probability of the preferred outputs under the model.")
    rejected_logps: float = Field(description="Mean log-probability of the non-preferred outputs under the model.")


RECENT_CHECKPOINTS = 5
"""Checkpoints every progress report carries: a report the rate limit drops, or two the operator
reads in one pass, lose none unless more than this many are written in between."""
RECENT_EVALS = 10
"""Evaluations every progress report carries (as RECENT_CHECKPOINTS)."""


class CheckpointReport(WireModel):
    """A checkpoint rank 0 finished writing, as `status.progress.recentCheckpoints` reports it."""

    step: int = Field(ge=0, description="Optimizer step the checkpoint holds.")
    epoch: float | None = Field(None, ge=0.0, description="Epochs completed at that step, fractional.")
    train_loss: float | None = Field(None, description="Training loss of that step.")
    eval_loss: float | None = Field(None, description="Loss on the validation file, when evaluated at that step.")
    time: KubeTime = Field(description="When the checkpoint was complete.")


class EvalReport(WireModel):
    """An evaluation on the validation file, as `status.progress.recentEvals` reports it."""

    step: int = Field(ge=0, description="Optimizer steps completed when it ran (0: before training).")
    eval_loss: float = Field(description="Loss on the validation file.")
    time: KubeTime = Field(description="When the evaluation finished.")


class Progress(WireModel):
    """Training progress, as shown in `status.progress`."""

    step: int = Field(0, ge=0, description="Optimizer steps completed.")
    total_steps: int | None = Field(None, ge=0, description="Optimizer steps in the whole run.")
    epoch: float | None = Field(None, ge=0.0, description="Epochs completed, fractional.")
    loss: float | None = Field(None, description="Training loss of the last step.")
    eval_loss: float | None = Field(None, description="Loss on the validation file at the last evaluation.")
    learning_rate: float | None = Field(None, ge=0.0, description="Learning rate of the last step.")
    tokens_per_second: float | None = Field(None, ge=0.0, description="Trained (non-pad) tokens per second.")
    eta_seconds: int | None = Field(None, ge=0, description="Estimated seconds until training ends.")
    heartbeat_time: KubeTime | None = Field(None, description="When the last step completed.")
    preference: PreferenceProgress | None = Field(
        None, description="Reward accuracy, margin and log-probabilities of the last step (trainingMethod dpo)."
    )
    peak_gpu_memory_bytes: int | None = Field(
        None, ge=0, description="Most GPU memory allocated by rank 0's tensors so far (absent on a CPU)."
    )
    mfu: float | None = Field(
        None, ge=0.0, description="Model FLOPs utilization: 6 x parameters x tokens/s over the GPUs' bf16 dense peak."
    )
    summary: str | None = Field(None, max_length=64, description="Short text for `kubectl get`, e.g. `30% (120/400)`.")
    recent_checkpoints: list[CheckpointReport] = Field(
        default_factory=list,
        max_length=RECENT_CHECKPOINTS,
        description="The newest checkpoints of this run, oldest first (the operator lists them in status.checkpoints).",
    )
    recent_evals: list[EvalReport] = Field(
        default_factory=list,
        max_length=RECENT_EVALS,
        description="The newest evaluations of this run, oldest first (the operator keeps them in status.evalHistory).",
    )

    @staticmethod
    def summarize(step: int, total_steps: int | None) -> str:
        if not total_steps:
            return f"step {step}"
        percent = min(100, (100 * step) // total_steps)
        return f"{percent}% ({step}/{total_steps})"


class ProgressReport(WireModel):
    """What rank 0 patches into its FineTuneJob: only `stage`, `stages` and `progress`."""

    stage: Stage = Field(description="The stage running now.")
    stages: list[StageRecord] = Field(description="Every stage of this attempt so far, in order.")
    progress: Progress | None = Field(None, description="Training progress, once training started.")

    def status_patch(self) -> dict[str, Any]:
        """The JSON merge patch body for the `status` subresource."""
        return {"status": self.to_wire()}


class JobError(WireModel):
    """Why a job failed: the shape of `status.error` and of a failed Result."""

    error_class: ErrorClass = Field(alias="class", description="Error class.")
    reason: str = Field(max_length=128, description="CamelCase reason code, e.g. RemoteCodeRefused.")
    message: str = Field(description="What happened.")
    hint: str | None = Field(None, description="What to change.")
    stage: Stage | None = Field(None, description="The stage that failed, if one had started.")
    retryable: bool = Field(False, description="Whether the operator retries this failure.")


class WarningNote(WireModel):
    """Something a user should know that did not stop the job."""

    reason: str = Field(max_length=128, description="CamelCase reason code, e.g. TemplateFamilyMismatch.")
    message: str = Field(description="What differs and what it means.")


class ModelFacts(WireModel):
    """What config.json says about a model, found before any weights move."""

    model_type: str = Field(description="config.json `model_type`.")
    architectures: list[str] = Field(default_factory=list, description="config.json `architectures`.")
    parameters: int = Field(ge=0, description="Parameter count, counted on the meta device.")
    max_positions: int | None = Field(None, ge=1, description="Longest sequence the model supports.")
    shape: ModelShapeFacts | None = Field(None, description="The numbers the GPU planner sizes the job with.")
    transformers_version: str | None = Field(None, description="config.json `transformers_version`.")
    revision_sha: str | None = Field(None, description="Resolved commit sha of the model repo.")
    adapter_of: str | None = Field(
        None,
        description="When the repo is itself a LoRA adapter: the base it is merged into before training "
        "(`repo@sha`); the model trained is that merge, which exists only in the trainer.",
    )


class OutputSummary(WireModel):
    uri: str = Field(description="Where the model was uploaded.")
    name: str = Field(description="Output model name.")
    files: int = Field(ge=0, description="Number of files uploaded.")
    bytes: int = Field(ge=0, description="Total bytes uploaded.")


class TrainingPerformance(WireModel):
    """How the Training stage computed, and how fast: the kernels used and what they achieved."""

    attention: AttentionKernel = Field(description="The attention kernel packed rows used (never auto).")
    compiled: bool = Field(description="Whether the decoder layers ran compiled by torch.compile.")
    device: str = Field(description="cpu, or the GPU's name.")
    tokens_per_second: float | None = Field(None, ge=0.0, description="Trained (non-pad) tokens per second.")
    peak_gpu_memory_bytes: int | None = Field(None, ge=0, description="Peak GPU memory allocated (rank 0).")
    mfu: float | None = Field(None, ge=0.0, description="Model FLOPs utilization (absent off known GPUs).")


class MemoryPlanReport(WireModel):
    """The micro-batch token budget the trainer planned from the device's memory, and its inputs."""

    token_budget: int = Field(ge=1, description="Most tokens in one micro-batch.")
    limited_by: str = Field(
        max_length=32,
        description="memory (what fits), ceiling (the planner's largest), sequence (one maxSeqLength, the least) "
        "or cpu (one maxSeqLength, the CPU rule).",
    )
    free_bytes: int = Field(ge=0, description="Free device memory once the model was loaded.")
    static_bytes: int = Field(ge=0, description="Gradients and optimizer state set aside.")
    activation_bytes_per_token: int = Field(ge=0, description="Activations kept for backward, per token.")
    loss_chunk_bytes: int = Field(ge=0, description="The loss's largest transient (one chunk of logits).")


class Outcome(enum.StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


_ELLIPSIS = "…"


class Result(WireModel):
    """The termination message: the last word of a trainer run, at most 4096 bytes serialized."""

    outcome: Outcome = Field(description="Succeeded or Failed.")
    exit_code: int = Field(0, ge=0, le=255, description="The process exit code.")
    error: JobError | None = Field(None, description="Why the run failed.")
    warnings: list[WarningNote] = Field(default_factory=list, description="Warnings found during the run.")
    warnings_omitted: int = Field(0, ge=0, description="Warnings left out to fit the size limit.")
    model: ModelFacts | None = Field(None, description="Facts about the model trained.")
    output: OutputSummary | None = Field(None, description="What was uploaded.")
    checkpoint_step: int | None = Field(None, ge=0, description="Step of the newest complete checkpoint.")
    resumed_from_step: int | None = Field(
        None, ge=0, description="Checkpoint step this run resumed from (its own job's, or fromCheckpoint's)."
    )
    performance: TrainingPerformance | None = Field(
        None, description="The kernels training used and its throughput, once training ran."
    )

    memory_plan: MemoryPlanReport | None = Field(None, description="The micro-batch budget planned from memory.")

    def to_termination_message(self, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
        """Serialize, shortening the longest free-text fields (then dropping warnings) to fit `limit` bytes."""
        result = self
        while True:
            text = json.dumps(result.to_wire(), ensure_ascii=False, separators=(",", ":"))
            overflow = len(text.encode()) - limit
            if overflow <= 0:
                return text
            result = result._shortened(overflow)

    @classmethod
    def from_termination_message(cls, text: str) -> Self:
        return cls.model_validate_json(text, by_alias=True, by_name=False)

    def _shortened(self, overflow: int) -> Result:
        texts: list[tuple[int, str]] = []
        if self.error is not None:
            texts.append((len(self.error.message), "message"))
            if self.error.hint:
                texts.append((len(self.error.hint), "hint"))
        texts.extend((len(w.message), f"warning:{i}") for i, w in enumerate(self.warnings))
        longest, where = max(texts, default=(0, ""))
        if longest <= 64 and self.warnings:
            return self.model_copy(
                update={"warnings": self.warnings[:-1], "warnings_omitted": self.warnings_omitted + 1}
            )
        if longest <= 1:
            raise ValueError("the result cannot be shortened below the termination message limit")
        keep = max(1, longest - overflow - len(_ELLIPSIS.encode()))
        if where.startswith("warning:"):
            index = int(where.removeprefix("warning:"))
            note = self.warnings[index]
            warnings = list(self.warnings)
            warnings[index] = note.model_copy(update={"message": _cut(note.message, keep)})
            return self.model_copy(update={"warnings": warnings})
        assert self.error is not None
        field_text = getattr(self.error, where)
        return self.model_copy(update={"error": self.error.model_copy(update={where: _cut(field_text, keep)})})


def _cut(text: str, keep: int) -> str:
    return text[: max(0, keep - 1)] + _ELLIPSIS
