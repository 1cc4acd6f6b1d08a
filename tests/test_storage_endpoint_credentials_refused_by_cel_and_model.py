"""An S3 endpoint with user:password@ in it is refused alike by the CRD's CEL rule and by the model,
at spec.storage.s3.endpointUrl, and neither message holds the keys."""

from __future__ import annotations

import copy

import celpy
import pytest

from kubetune_operator.api.errors import InvalidResourceError, validate
from kubetune_operator.api.spec import FineTuneJobSpec

from .conftest import VALID_JOB, crd_schema

SECRET = "SENTINELsecretKey"


def _s3_rule() -> dict[str, str]:
    spec = crd_schema("finetunejobs.yaml")["properties"]["spec"]
    (rule,) = spec["properties"]["storage"]["properties"]["s3"]["x-kubernetes-validations"]
    return rule


@pytest.mark.parametrize(
    ("endpoint", "refused"),
    [
        ("http://minio.storage.svc:9000", False),
        ("https://s3.eu-central-1.amazonaws.com", False),
        ("https://rgw.ceph.example/path@with-at", False),
        (f"http://AKIAEXAMPLE:{SECRET}@minio:9000", True),
        ("https://AKIAEXAMPLE@rgw.ceph.example", True),
    ],
)
def test_cel_and_model_agree_on_endpoints_with_credentials(endpoint: str, refused: bool) -> None:
    rule = _s3_rule()
    environment = celpy.Environment()
    program = environment.program(environment.compile(rule["rule"]))
    s3 = {"endpointUrl": endpoint, "region": "us-east-1"}
    assert bool(program.evaluate({"self": celpy.json_to_cel(s3)})) is not refused
    assert SECRET not in rule["message"]

    spec = copy.deepcopy(VALID_JOB["spec"]) | {"storage": {"s3": s3}}
    if not refused:
        validate(FineTuneJobSpec, spec, kind="FineTuneJobSpec")
        return
    with pytest.raises(InvalidResourceError) as raised:
        validate(FineTuneJobSpec, spec, kind="FineTuneJobSpec")
    (error,) = raised.value.errors
    assert error.loc == ("storage", "s3", "endpointUrl")
    assert "credentialsSecretRef" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert "AKIAEXAMPLE" not in str(raised.value)
