"""The `kind: kserve` serving object: a serving.kserve.io/v1beta1 InferenceService on the Hugging Face
runtime with the vLLM backend (whose arguments pass through to vLLM, `--lora-modules` included).
"""

from __future__ import annotations

from typing import Any

from ..api.record import ResolvedJob
from ..api.serve import ServeSpec
from ..resolve.serving import unmerged_adapter
from .labels import JobRef
from .serving_parts import MODEL_DIR, hf_token_env, lora_args, placement, server_resources, serving_metadata

KSERVE_API_VERSION = "serving.kserve.io/v1beta1"


def inference_service(
    serve: ServeSpec, record: ResolvedJob, *, job: JobRef, name: str, gpus: int, parameters: int | None
) -> dict[str, Any]:
    """The Hugging Face runtime with the vLLM backend: storageUri for what is on a claim or in a bucket."""
    output = record.output_uri
    model: dict[str, Any] = {"modelFormat": {"name": "huggingface"}}
    args = ["--backend=vllm"]
    predictor: dict[str, Any] = {"minReplicas": serve.replicas}
    if unmerged_adapter(record):
        # --model_id takes precedence over the downloaded storageUri: the base comes from the Hub at the
        # commit trained, and the adapter (a claim's or a bucket's) is what KServe puts in /mnt/models.
        args += [f"--model_name={name}", f"--model_id={record.model_repo}"]
        if record.revision_sha:
            args.append(f"--model_revision={record.revision_sha}")
        if output.startswith("hf://"):
            adapter = output.removeprefix("hf://")
        else:
            model["storageUri"] = output.rstrip("/")
            adapter = MODEL_DIR
        args += lora_args(record, adapter)
    elif output.startswith("hf://"):
        args += [f"--model_name={record.output_name}", f"--model_id={output.removeprefix('hf://')}"]
    else:
        args.append(f"--model_name={record.output_name}")
        model["storageUri"] = output.rstrip("/")
    if gpus > 1:
        args.append(f"--tensor-parallel-size={gpus}")
    model["args"] = args
    if env := hf_token_env(record):
        model["env"] = env
    model["resources"] = server_resources(record, gpus, parameters=parameters)
    predictor.update(placement(record, gpus))
    if serve.service_account_name is not None:
        predictor["serviceAccountName"] = serve.service_account_name
    predictor["model"] = model
    return {
        "apiVersion": KSERVE_API_VERSION,
        "kind": "InferenceService",
        "metadata": serving_metadata(serve, job=job, name=name),
        "spec": {"predictor": predictor},
    }
