"""A serve block for an output no server can serve is refused at admission, at spec.serve, with the fix.

Refused: an output that stays in the trainer's pod (a file:// or plain path, given in the spec or by the
operator's default), an unmerged LoRA adapter above vLLM's largest rank, and an unmerged adapter on
s3:// for KServe (one storageUri: the adapter would have no base). The CRD's CEL rule and the model agree
on the part the spec alone decides.
"""

from __future__ import annotations

import copy

import celpy
import pytest

from kubetune_operator.api.errors import InvalidResourceError, validate
from kubetune_operator.api.record import ResolvedJob
from kubetune_operator.api.serve import ServeSpec
from kubetune_operator.api.spec import FineTuneJobSpec
from kubetune_operator.resolve.resolution import Unresolved, parse_spec, resolve_job
from kubetune_operator.resolve.serving import serving_problems
from kubetune_operator.settings import OperatorSettings
from kubetune_trainer.contract import ModelFacts

from ..conftest import VALID_JOB, crd_schema
from .core_builders import CATALOG, JOB, SETTINGS, resolved, spec


def _serve_rule() -> dict[str, str]:
    rules = crd_schema("finetunejobs.yaml")["properties"]["spec"]["x-kubernetes-validations"]
    (rule,) = [r for r in rules if r.get("fieldPath") == ".serve"]
    return rule


@pytest.mark.parametrize(
    ("output", "refused"),
    [
        ("pvc://models/support", False),
        ("s3://models/support", False),
        ("hf://acme/support-bot", False),
        ("file:///tmp/model", True),
        ("/models/support", True),
    ],
)
def test_cel_and_model_agree_on_outputs_a_server_can_read(output: str, refused: bool) -> None:
    body = copy.deepcopy(VALID_JOB["spec"]) | {"output": {"uri": output}, "serve": {"kind": "vllm"}}
    environment = celpy.Environment()
    program = environment.program(environment.compile(_serve_rule()["rule"]))
    assert bool(program.evaluate({"self": celpy.json_to_cel(body)})) is not refused
    if not refused:
        validate(FineTuneJobSpec, body, kind="FineTuneJobSpec")
        return
    with pytest.raises(InvalidResourceError) as raised:
        validate(FineTuneJobSpec, body, kind="FineTuneJobSpec")
    (error,) = raised.value.errors
    assert error.loc == ("serve",)
    assert "pvc://claim/path" in error.message
    assert "remove serve" in error.message


def test_a_job_without_serve_may_write_anywhere() -> None:
    body = copy.deepcopy(VALID_JOB["spec"]) | {"output": {"uri": "file:///tmp/model"}}
    validate(FineTuneJobSpec, body, kind="FineTuneJobSpec")


def test_the_operators_own_default_output_is_checked_when_the_job_names_none() -> None:
    local = OperatorSettings(trainer_image="registry.example/kubetune/trainer:1.0", default_output_uri="/srv/models")
    outcome = resolve_job(
        spec(serve={"kind": "kserve"}), job_name=JOB.name, namespace=JOB.namespace, templates=CATALOG, settings=local
    )
    assert outcome.problem == Unresolved.INVALID_SPEC
    (line,) = outcome.field_errors
    assert line.startswith("spec.serve: output /srv/models/ml/support-bot: no server can read this output")
    served = resolve_job(
        spec(serve={"kind": "kserve"}), job_name=JOB.name, namespace=JOB.namespace, templates=CATALOG, settings=SETTINGS
    )
    assert served.job is not None, "the default pvc:// location is served"


def test_an_adapter_over_a_model_that_is_itself_an_adapter_is_refused_once_the_preflight_says_so() -> None:
    job = spec(model="auto", fromHfModel="acme/llama-chat-lora", lora={"merge": False}, serve={"kind": "vllm"})
    facts = ModelFacts(
        model_type="llama",
        architectures=["LlamaForCausalLM"],
        parameters=6_738_415_616,
        max_positions=4096,
        revision_sha="b" * 40,
        adapter_of="meta-llama/Llama-2-7b-chat-hf@" + "c" * 40,
    )
    outcome = resolve_job(
        job, job_name=JOB.name, namespace=JOB.namespace, templates=CATALOG, settings=SETTINGS, facts=facts
    )
    assert outcome.problem == Unresolved.INVALID_SPEC
    (line,) = outcome.field_errors
    assert line.startswith("spec.serve: the output is a LoRA adapter over acme/llama-chat-lora")
    assert "lora.merge: true" in line
    merged = spec(model="auto", fromHfModel="acme/llama-chat-lora", lora={"merge": True}, serve={"kind": "vllm"})
    assert resolve_job(
        merged, job_name=JOB.name, namespace=JOB.namespace, templates=CATALOG, settings=SETTINGS, facts=facts
    ).ok


def test_kserve_serves_an_adapter_in_a_bucket_through_storage_uri_over_its_base() -> None:
    job = spec(output={"uri": "s3://models/support"}, lora={"merge": False}, serve={"kind": "kserve"})
    assert resolve_job(job, job_name=JOB.name, namespace=JOB.namespace, templates=CATALOG, settings=SETTINGS).ok


def test_an_unmerged_adapter_above_vllms_largest_rank_is_refused_a_merged_one_is_not() -> None:
    base = resolved(spec(lora={"merge": False}))
    wide = ResolvedJob.parse({**base.to_wire(), "lora": {**base.to_wire()["lora"], "r": 1024}})
    (problem,) = serving_problems(ServeSpec.parse({"kind": "vllm"}), wide)
    assert problem.path == "spec.serve"
    assert "rank 1024" in problem.message
    assert "lora.merge: true" in problem.message
    merged = ResolvedJob.parse({**wide.to_wire(), "lora": {**wide.to_wire()["lora"], "merge": True}})
    assert serving_problems(ServeSpec.parse({"kind": "vllm"}), merged) == []


def test_a_refused_spec_is_an_invalid_spec_resolution_listing_the_field() -> None:
    raw = copy.deepcopy(VALID_JOB["spec"]) | {"output": {"uri": "/models/x"}, "serve": {"kind": "vllm"}}
    parsed = parse_spec(raw)
    assert not isinstance(parsed, FineTuneJobSpec)
    assert parsed.problem == Unresolved.INVALID_SPEC
    assert parsed.field_errors[0].startswith("spec.serve:")


def test_an_owned_server_of_a_job_with_a_ttl_is_a_warning_an_unowned_one_is_not() -> None:
    owned = resolved(spec(serve={"kind": "vllm"}, ttlSecondsAfterFinished=600))
    (warning,) = [w for w in owned.warnings if w.reason == "ServerDeletedWithJob"]
    assert "600s after it finished" in warning.message
    assert "serve.owned: false" in warning.message
    kept = resolved(spec(serve={"kind": "vllm", "owned": False}, ttlSecondsAfterFinished=600))
    assert not [w for w in kept.warnings if w.reason == "ServerDeletedWithJob"]


def test_an_image_is_for_vllm_only_in_cel_and_in_the_model() -> None:
    spec_schema = crd_schema("finetunejobs.yaml")["properties"]["spec"]
    (rule,) = spec_schema["properties"]["serve"]["x-kubernetes-validations"]
    environment = celpy.Environment()
    program = environment.program(environment.compile(rule["rule"]))
    for serve, refused in (
        ({"kind": "vllm", "image": "vllm/vllm-openai:v0.11.0"}, False),
        ({"kind": "kserve"}, False),
        ({"kind": "kserve", "image": "vllm/vllm-openai:v0.11.0"}, True),
    ):
        assert bool(program.evaluate({"self": celpy.json_to_cel(serve)})) is not refused
        body = copy.deepcopy(VALID_JOB["spec"]) | {"serve": serve}
        if not refused:
            validate(FineTuneJobSpec, body, kind="FineTuneJobSpec")
            continue
        with pytest.raises(InvalidResourceError) as raised:
            validate(FineTuneJobSpec, body, kind="FineTuneJobSpec")
        (error,) = raised.value.errors
        assert error.loc == ("serve", "image")
        assert "kind: vllm" in error.message
