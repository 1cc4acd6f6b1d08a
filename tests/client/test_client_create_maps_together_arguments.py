"""Together's `fine_tuning.create` keyword arguments become the FineTuneJob a user would write by hand,
plain-string secrets become Secrets of the job's own (never a field of the job), and what kubetune cannot
honour is refused with what to use instead. Pure: no cluster."""

from __future__ import annotations

import json
import re

import pytest

from kubetune_operator.api.errors import InvalidResourceError
from kubetune_operator.client.create_request import UnsupportedArgument, build_create_request, new_job_name
from kubetune_operator.client.views import checkpoints_of, job_response, together_status


def test_together_arguments_map_to_the_spec_and_unset_ones_stay_out() -> None:
    request = build_create_request(
        name="ft-0123456789",
        namespace="ml",
        model="togethercomputer/llama-2-7b-chat",
        training_file="pvc://datasets/train.jsonl",
        validation_file="pvc://datasets/valid.jsonl",
        n_epochs=3,
        n_evals=2,
        batch_size="max",
        learning_rate=2e-5,
        lr_scheduler_type="linear",
        min_lr_ratio=0.1,
        lora=True,
        lora_r=16,
        lora_alpha=32,
        lora_trainable_modules="q_proj",
        suffix="support-bot",
        wandb_api_key="wandb-secret-value",
        wandb_project_name="bots",
        hf_api_token="hf_secret_value",
        hf_output_repo_name="acme/support-bot",
    )
    spec = request.manifest["spec"]
    assert request.manifest["metadata"] == {"name": "ft-0123456789", "namespace": "ml"}
    assert spec["hyperparameters"] == {
        "nEpochs": 3,
        "learningRate": 2e-5,
        "batchSize": "max",
        "lrScheduler": {"type": "linear", "minLrRatio": 0.1},
        "nEvals": 2,
    }
    assert spec["lora"] == {"enabled": True, "r": 16, "alpha": 32, "targetModules": ["q_proj"]}
    assert spec["output"] == {"uri": "hf://acme/support-bot"}
    assert spec["wandb"] == {"apiKeySecretRef": {"name": "ft-0123456789-wandb", "key": "api-key"}, "project": "bots"}
    assert spec["hfTokenSecretRef"] == {"name": "ft-0123456789-hf-token", "key": "token"}
    text = json.dumps(request.manifest)
    assert "wandb-secret-value" not in text
    assert "hf_secret_value" not in text
    assert {(s.name, s.value) for s in request.secrets} == {
        ("ft-0123456789-wandb", "wandb-secret-value"),
        ("ft-0123456789-hf-token", "hf_secret_value"),
    }
    assert "wandb-secret-value" not in repr(request), "a secret's value is never in a repr (or a log line)"


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"train_vision": True}, "train_vision"),
        ({"training_method": "dpo"}, "training_method"),
        ({"wandb_project_name": "p"}, "wandb_api_key"),
        ({"model": None}, "model is required"),
    ],
)
def test_what_kubetune_cannot_honour_is_refused_with_the_alternative(arguments: dict[str, object], says: str) -> None:
    base: dict[str, object] = {"model": "auto", "from_hf_model": "org/m", "training_file": "pvc://d/t.jsonl"}
    with pytest.raises(UnsupportedArgument, match=says):
        build_create_request(name="ft-a", namespace="ml", **{**base, **arguments})  # type: ignore[arg-type]


def test_a_bad_value_names_the_field_before_anything_is_sent() -> None:
    with pytest.raises(InvalidResourceError, match=re.escape("hyperparameters.learningRate")):
        build_create_request(
            name="ft-a",
            namespace="ml",
            model="auto",
            from_hf_model="org/m",
            training_file="pvc://d/t.jsonl",
            learning_rate=7.0,
        )


def test_generated_names_are_dns_labels_starting_like_together_ids() -> None:
    names = {new_job_name() for _ in range(50)}
    assert len(names) == 50
    assert all(name.startswith("ft-") and len(name) == 13 and name.islower() for name in names)


def test_status_and_checkpoints_read_as_together_shows_them() -> None:
    job = {
        "metadata": {"name": "bot", "namespace": "ml", "creationTimestamp": "2026-12-01T00:00:00Z"},
        "spec": {"model": "auto", "trainingFile": "pvc://d/t.jsonl"},
        "status": {
            "phase": "Succeeded",
            "completionTime": "2026-12-01T01:00:00Z",
            "resolved": {"lora": {"r": 8, "alpha": 16, "dropout": 0.0, "targetModules": ["all-linear"], "merge": True}},
            "checkpoints": [{"step": 40, "uri": "pvc://ckpt/ml/bot", "time": "2026-12-01T00:30:00Z"}],
            "outputModel": {"uri": "pvc://models/bot", "name": "m-bot"},
        },
    }
    assert together_status(job) == "completed"
    assert job_response(job).training_type is not None
    assert [(c.type, c.name, c.location) for c in checkpoints_of(job)] == [
        ("Final Merged", "bot", "pvc://models/bot"),
        ("Final Adapter", "bot", "pvc://models/bot/adapter"),
        ("Intermediate", "bot:40", "pvc://ckpt/ml/bot"),
    ]
    running = {**job, "spec": {**job["spec"], "cancel": True}, "status": {"phase": "Running", "stage": "Training"}}
    assert together_status(running) == "cancel_requested"
    failed = {**job, "status": {"phase": "Failed", "error": {"class": "InvalidInput"}}}
    assert together_status(failed) == "user_error"
