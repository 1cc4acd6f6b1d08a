"""Every invalid manifest is rejected twice, naming the same field: by the CRD schema the API
server enforces (checked here with jsonschema) and by the pydantic model the operator uses.
The message names the field path, the value given and what is allowed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubetune_operator.api.errors import InvalidResourceError, validate
from kubetune_operator.api.resources import FineTuneJob

from .conftest import VALID_JOB, CrdValidator

DELETE = object()

Path = tuple[str | int, ...]

# (case id, field path, bad value or DELETE, words the message must hold)
CASES: list[tuple[str, Path, Any, str]] = [
    ("empty-model", ("spec", "model"), "", "must have at least 1 character"),
    ("missing-model", ("spec", "model"), DELETE, "required"),
    ("missing-training-file", ("spec", "trainingFile"), DELETE, "required"),
    ("ftp-training-file", ("spec", "trainingFile"), "ftp://host/train.jsonl", "pvc://claim/path"),
    ("ftp-validation-file", ("spec", "validationFile"), "ftp://host/valid.jsonl", "s3://bucket/key"),
    # No trainer reads Google Cloud Storage yet: refused at apply time, not after a preflight pod.
    ("gs-training-file", ("spec", "trainingFile"), "gs://bucket/train.jsonl", "s3://bucket/key"),
    ("gs-output", ("spec", "output", "uri"), "gs://bucket/models", "s3://bucket/prefix"),
    ("hf-dataset-without-path", ("spec", "trainingFile"), "hf://datasets/org", "hf://datasets/org/name/path"),
    ("bad-repo-id", ("spec", "fromHfModel"), "not a repo!", "Hugging Face repo id"),
    ("revision-with-space", ("spec", "hfModelRevision"), "my branch", "commit sha, branch or tag"),
    ("secret-name-uppercase", ("spec", "hfTokenSecretRef", "name"), "HF_Token", "DNS subdomain"),
    ("secret-without-key", ("spec", "hfTokenSecretRef", "key"), DELETE, "required"),
    ("training-method-ppo", ("spec", "trainingMethod"), "ppo", "'sft' or 'dpo'"),
    ("zero-epochs", ("spec", "hyperparameters", "nEpochs"), 0, "greater than or equal to 1"),
    ("epochs-as-string", ("spec", "hyperparameters", "nEpochs"), "3", "integer"),
    ("zero-learning-rate", ("spec", "hyperparameters", "learningRate"), 0, "greater than 0"),
    ("learning-rate-above-one", ("spec", "hyperparameters", "learningRate"), 2.0, "less than or equal to 1"),
    ("zero-batch-size", ("spec", "hyperparameters", "batchSize"), 0, "greater than or equal to 1"),
    ("batch-size-word", ("spec", "hyperparameters", "batchSize"), "huge", "a positive integer or `max`"),
    ("fractional-batch-size", ("spec", "hyperparameters", "batchSize"), 1.5, "integer"),
    ("scheduler-step", ("spec", "hyperparameters", "lrScheduler", "type"), "step", "'linear', 'cosine' or 'constant'"),
    ("min-lr-ratio-above-one", ("spec", "hyperparameters", "lrScheduler", "minLrRatio"), 1.5, "less than or equal"),
    ("zero-cycles", ("spec", "hyperparameters", "lrScheduler", "numCycles"), 0, "greater than 0"),
    ("negative-warmup", ("spec", "hyperparameters", "warmupRatio"), -0.1, "greater than or equal to 0"),
    ("negative-grad-norm", ("spec", "hyperparameters", "maxGradNorm"), -1, "greater than or equal to 0"),
    ("negative-weight-decay", ("spec", "hyperparameters", "weightDecay"), -0.01, "greater than or equal to 0"),
    ("zero-checkpoints", ("spec", "hyperparameters", "nCheckpoints"), 0, "greater than or equal to 1"),
    ("negative-evals", ("spec", "hyperparameters", "nEvals"), -1, "greater than or equal to 0"),
    ("train-on-inputs-sometimes", ("spec", "hyperparameters", "trainOnInputs"), "sometimes", "'auto'"),
    ("tiny-max-seq-length", ("spec", "hyperparameters", "maxSeqLength"), 16, "greater than or equal to 32"),
    ("packing-as-string", ("spec", "hyperparameters", "packing"), "yes", "boolean"),
    ("negative-seed", ("spec", "hyperparameters", "seed"), -1, "greater than or equal to 0"),
    ("auto-batch-on-oom-as-string", ("spec", "hyperparameters", "autoBatchOnOOM"), "off", "boolean"),
    ("zero-lora-rank", ("spec", "lora", "r"), 0, "greater than or equal to 1"),
    ("zero-lora-alpha", ("spec", "lora", "alpha"), 0, "greater than or equal to 1"),
    ("lora-dropout-one", ("spec", "lora", "dropout"), 1.0, "less than 1"),
    ("no-target-modules", ("spec", "lora", "targetModules"), [], "must have at least 1 item"),
    ("lora-enabled-string", ("spec", "lora", "enabled"), "true", "boolean"),
    ("suffix-41-chars", ("spec", "suffix"), "s" * 41, "must have at most 40 characters"),
    ("suffix-with-space", ("spec", "suffix"), "my bot", "letters, digits"),
    ("wandb-without-key", ("spec", "wandb", "apiKeySecretRef"), DELETE, "required"),
    ("wandb-ftp-url", ("spec", "wandb", "baseUrl"), "ftp://wandb.example.com", "http(s) URL"),
    ("output-ftp", ("spec", "output", "uri"), "ftp://models/out", "hf://org/repo"),
    ("output-without-uri", ("spec", "output", "uri"), DELETE, "required"),
    ("checkpoint-https", ("spec", "checkpoint", "uri"), "https://example.com/ckpt", "pvc://claim/path"),
    ("from-checkpoint-uppercase", ("spec", "fromCheckpoint"), "Job_1:40", "FineTuneJob name"),
    ("negative-retries", ("spec", "maxRetries"), -1, "greater than or equal to 0"),
    ("too-many-retries", ("spec", "maxRetries"), 21, "less than or equal to 20"),
    ("zero-deadline", ("spec", "activeDeadlineSeconds"), 0, "greater than or equal to 1"),
    ("negative-ttl", ("spec", "ttlSecondsAfterFinished"), -5, "greater than or equal to 0"),
    ("queue-name-with-space", ("spec", "queueName"), "gpu queue", "DNS subdomain"),
    ("priority-class-uppercase", ("spec", "priorityClassName"), "HIGH", "DNS subdomain"),
    ("suspend-as-string", ("spec", "suspend"), "no", "boolean"),
    ("job-name-with-dot", ("metadata", "name"), "smollm.chat", "DNS-1035 label"),
    ("job-name-too-long", ("metadata", "name"), "j" * 64, "at most 63 characters"),
    ("misplaced-field", ("spec", "learningRate"), 1e-4, "did you mean spec.hyperparameters.learningRate?"),
    ("snake-case-field", ("spec", "hyperparameters", "learning_rate"), 1e-4, "did you mean learningRate?"),
    ("unknown-lora-field", ("spec", "lora", "rank"), 8, "fields allowed here: enabled, r, alpha"),
]


def mutated(path: Path, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(VALID_JOB)
    parent: Any = document
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


def test_the_table_is_large() -> None:
    assert len(CASES) >= 30
    assert len({case[0] for case in CASES}) == len(CASES)


def test_the_base_manifest_is_valid(finetunejob_schema: CrdValidator) -> None:
    assert finetunejob_schema.errors(VALID_JOB) == []
    validate(FineTuneJob, VALID_JOB, kind="FineTuneJob")


@pytest.mark.parametrize(("path", "value", "words"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_rejected_by_both_naming_the_same_field(
    finetunejob_schema: CrdValidator, path: Path, value: Any, words: str
) -> None:
    document = mutated(path, value)

    assert finetunejob_schema.error_paths(document) == {path}

    with pytest.raises(InvalidResourceError) as caught:
        validate(FineTuneJob, document, kind="FineTuneJob")
    (error,) = caught.value.errors
    assert error.loc == path
    assert words in error.message
    rendered = str(caught.value)
    assert ".".join(map(str, path)) in rendered
    if value is not DELETE and not isinstance(value, list) and "unknown" not in error.message:
        assert str(value).strip("'")[:20] in rendered, "the message shows the value given"
