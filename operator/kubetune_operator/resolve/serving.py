"""What `spec.serve` can serve, decided at admission from the resolved job; and the server's GPU count.

Pure. A serve block that no server could honour is refused before any GPU is held (InvalidInput,
naming spec.serve and the fix), never discovered after training.
"""

from __future__ import annotations

from kubetune_trainer.contract import ModelFacts, WarningNote

from ..api.errors import FieldError
from ..api.record import ResolvedJob
from ..api.serve import OUTPUT_NOT_SERVABLE, ServeSpec, output_servable

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The adapter ranks vLLM's `--max-lora-rank` accepts; a larger adapter cannot be served unmerged."""
WEIGHT_BYTES_PER_PARAMETER = 2
"""Served in bf16."""
USABLE_FRACTION = 0.9
"""vLLM's default --gpu-memory-utilization."""
MEMORY_HEADROOM_GIB = 16
"""Host memory beside the weights: the server process, the tokenizer, vLLM's CPU swap space (4 GiB)."""
CPUS_PER_GPU = 4
_GIB = 1024**3


def unmerged_adapter(job: ResolvedJob) -> bool:
    """Whether the output is a LoRA adapter alone (lora.merge false): served over its base model."""
    return job.lora is not None and not job.lora.merge


def lora_rank_for_vllm(rank: int) -> int | None:
    """The smallest `--max-lora-rank` vLLM accepts that holds `rank`; None above its largest."""
    return next((allowed for allowed in VLLM_LORA_RANKS if allowed >= rank), None)


def serving_problems(serve: ServeSpec | None, job: ResolvedJob, *, facts: ModelFacts | None = None) -> list[FieldError]:
    """Why `serve` cannot serve this job's output, each naming spec.serve and what to change.

    `facts`: the preflight's, once known (a fromHfModel that is itself an adapter is found there).
    """
    if serve is None:
        return []
    found: list[FieldError] = []
    if not output_servable(job.output_uri):
        found.append(FieldError("spec.serve", serve.kind.value, f"output {job.output_uri}: {OUTPUT_NOT_SERVABLE}"))
    if unmerged_adapter(job):
        assert job.lora is not None
        if facts is not None and facts.adapter_of is not None:
            found.append(
                FieldError(
                    "spec.serve",
                    serve.kind.value,
                    f"the output is a LoRA adapter over {job.model_repo}, itself an adapter the trainer merges into "
                    f"{facts.adapter_of}: that base exists only in the trainer, so no server can load the adapter; "
                    "set lora.merge: true to serve the merged model",
                )
            )
        if lora_rank_for_vllm(job.lora.r) is None:
            found.append(
                FieldError(
                    "spec.serve",
                    serve.kind.value,
                    f"the output is an unmerged LoRA adapter of rank {job.lora.r}, above the largest vLLM serves "
                    f"({VLLM_LORA_RANKS[-1]}): set lora.merge: true to serve a merged model, or lora.r "
                    f"{VLLM_LORA_RANKS[-1]} or less",
                )
            )
    return found


SERVER_DELETED_WITH_JOB = "ServerDeletedWithJob"


def serving_warnings(serve: ServeSpec | None, *, ttl: int | None) -> list[WarningNote]:
    """What the user should know of a serve block that is valid: an owned server goes with a job's TTL."""
    if serve is None or not serve.owned or ttl is None:
        return []
    message = (
        f"spec.serve is owned by the job and ttlSecondsAfterFinished is {ttl}: the server is deleted with the job "
        f"{ttl}s after it finished; set serve.owned: false to keep it"
    )
    return [WarningNote(reason=SERVER_DELETED_WITH_JOB, message=message)]


def server_memory_gib(job: ResolvedJob, *, parameters: int | None) -> int:
    """Host memory of one server pod: the bf16 weights (loaded through host memory) and a fixed headroom.

    Not the trainer pod's memory, which is sized for a whole node's optimizer state.
    """
    weights = (parameters or job.template.parameters) * WEIGHT_BYTES_PER_PARAMETER
    return -(-weights // _GIB) + MEMORY_HEADROOM_GIB


def serving_gpus(serve: ServeSpec, job: ResolvedJob, *, parameters: int | None) -> int:
    """The server's GPUs: `serve.gpus`, else the fewest (a power of two, for tensor parallelism) of the
    record's GPUs per node whose memory holds the bf16 weights twice over (the rest for the KV cache).
    """
    if serve.gpus is not None:
        return serve.gpus
    most = job.gpus_per_node
    if most == 0 or job.gpu_plan is None:
        return most
    weights = (parameters or job.template.parameters) * WEIGHT_BYTES_PER_PARAMETER
    usable = job.gpu_plan.gpu_memory_bytes * USABLE_FRACTION
    count = 1
    while count < most and count * usable < 2 * weights:
        count *= 2
    return min(count, most)
