"""spec.storage.s3 reaches trainer and preflight pods as the AWS_* env botocore reads; keys only by reference;
the operator's serviceAccountAnnotations give both pods a cloud identity (IRSA, Workload Identity)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kubetune_operator.api.spec import FineTuneJobSpec
from kubetune_operator.render import render_attempt, render_preflight
from kubetune_operator.render.object_store import local_object_store_env
from kubetune_operator.settings import OperatorSettings

from .core_builders import JOB, SETTINGS, resolved, spec

MINIO = {
    "s3": {
        "credentialsSecretRef": {"name": "minio-keys", "accessKeyIdKey": "user", "secretAccessKeyKey": "password"},
        "endpointUrl": "http://minio.storage.svc:9000",
        "region": "us-east-1",
    }
}
IRSA = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/kubetune-trainer"}


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def _env(batch_job: dict[str, Any]) -> dict[str, Any]:
    (container,) = batch_job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _pods(settings: OperatorSettings = SETTINGS, **fields: Any) -> list[dict[str, Any]]:
    job = resolved(spec(**fields), settings=settings)
    attempt = _by_kind(render_attempt(job, job=JOB, attempt=1, settings=settings))["Job"]
    preflight = _by_kind(render_preflight(job, job=JOB, settings=settings))["Job"]
    return [attempt, preflight]


def test_minio_keys_endpoint_and_region_reach_trainer_and_preflight_pods() -> None:
    for batch_job in _pods(storage=MINIO):
        env = _env(batch_job)
        assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "minio-keys", "key": "user"}}
        assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "minio-keys", "key": "password"}}
        assert env["AWS_ENDPOINT_URL"] == "http://minio.storage.svc:9000"
        assert env["AWS_REGION"] == "us-east-1"
        assert "AWS_SESSION_TOKEN" not in env


def test_the_secret_keys_default_to_the_aws_variable_names_and_a_session_token_is_optional() -> None:
    storage = {"s3": {"credentialsSecretRef": {"name": "aws", "sessionTokenKey": "token"}}}
    for batch_job in _pods(storage=storage):
        env = _env(batch_job)
        assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "aws", "key": "AWS_ACCESS_KEY_ID"}}
        assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "aws", "key": "AWS_SECRET_ACCESS_KEY"}}
        assert env["AWS_SESSION_TOKEN"] == {"secretKeyRef": {"name": "aws", "key": "token"}}
        assert "AWS_ENDPOINT_URL" not in env


def test_a_job_without_storage_gives_its_pods_no_aws_variables() -> None:
    for batch_job in _pods():
        assert not [name for name in _env(batch_job) if name.startswith("AWS_")]


def test_service_account_annotations_give_trainer_and_preflight_a_cloud_identity() -> None:
    settings = SETTINGS.model_copy(update={"service_account_annotations": IRSA})
    job = resolved(spec(), settings=settings)
    attempt = _by_kind(render_attempt(job, job=JOB, attempt=1, settings=settings))
    preflight_objects = render_preflight(job, job=JOB, settings=settings)
    preflight = _by_kind(preflight_objects)
    for objects in (attempt, preflight):
        account = objects["ServiceAccount"]
        assert account["metadata"]["annotations"] == IRSA
        assert account["automountServiceAccountToken"] is False
        pod_spec = objects["Job"]["spec"]["template"]["spec"]
        assert pod_spec["serviceAccountName"] == account["metadata"]["name"]
    assert preflight_objects[0]["kind"] == "ServiceAccount", "the account exists before the Job's pod needs it"
    # The preflight still gets no Kubernetes API token, and its account has no Role.
    assert preflight["Job"]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert "Role" not in preflight


def test_without_annotations_the_preflight_keeps_the_default_account_and_no_annotations_are_written() -> None:
    job = resolved(spec())
    preflight = _by_kind(render_preflight(job, job=JOB, settings=SETTINGS))
    assert "ServiceAccount" not in preflight
    assert "serviceAccountName" not in preflight["Job"]["spec"]["template"]["spec"]
    account = _by_kind(render_attempt(job, job=JOB, attempt=1, settings=SETTINGS))["ServiceAccount"]
    assert "annotations" not in account["metadata"]


def test_service_account_annotations_are_read_from_the_environment() -> None:
    settings = OperatorSettings.from_env(
        {
            "KUBETUNE_SERVICE_ACCOUNT_ANNOTATIONS": "eks.amazonaws.com/role-arn=arn:aws:iam::1:role/r, "
            "iam.gke.io/gcp-service-account=trainer@project.iam.gserviceaccount.com"
        }
    )
    assert settings.service_account_annotations == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r",
        "iam.gke.io/gcp-service-account": "trainer@project.iam.gserviceaccount.com",
    }


@pytest.mark.parametrize("raw", ["eks.amazonaws.com/role-arn", "not a key=value"])
def test_a_malformed_annotation_setting_names_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match="KUBETUNE_SERVICE_ACCOUNT_ANNOTATIONS"):
        OperatorSettings.from_env({"KUBETUNE_SERVICE_ACCOUNT_ANNOTATIONS": raw})


def test_an_endpoint_with_credentials_in_it_is_refused_naming_the_field_and_never_echoing_them() -> None:
    body = {
        "model": "togethercomputer/llama-2-7b-chat",
        "trainingFile": "s3://data/train.jsonl",
        "storage": {"s3": {"endpointUrl": "http://AKIAEXAMPLE:SENTINELsecret@minio:9000"}},
    }
    with pytest.raises(ValidationError) as raised:
        FineTuneJobSpec.parse(body)
    message = str(raised.value)
    assert "storage.s3.endpointUrl" in message
    assert "credentialsSecretRef" in message
    assert "SENTINELsecret" not in message


def test_a_local_run_takes_endpoint_and_region_from_the_spec_and_says_where_keys_come_from() -> None:
    s3 = spec(storage=MINIO).storage
    assert s3 is not None
    environ, note = local_object_store_env(s3.s3, {"AWS_REGION": "eu-west-1"})
    assert environ == {"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://minio.storage.svc:9000"}
    assert note is not None
    assert "minio-keys" in note
    assert "AWS_ACCESS_KEY_ID" in note
    _, quiet = local_object_store_env(s3.s3, {"AWS_ACCESS_KEY_ID": "mine"})
    assert quiet is None
