"""spec.gpus changed on a started job resizes its record for the next attempt, checked against the record alone.

A 135M model on the 70B template (4 nodes of 8 GPUs), admitted on 16 GPUs (2 nodes, as its spec
asked), may resume on one node or on whole nodes up to the template's 32; a count that is not a
whole number of nodes, past the maximum, or too few for the model is refused naming spec.gpus.
"""

from __future__ import annotations

import pytest

from kubetune_operator.api.record import ResolvedJob
from kubetune_operator.resolve.resize import resize_request, resized
from kubetune_operator.resolve.resolution import resolve_job
from kubetune_trainer.contract import ModelFacts

from .core_builders import CATALOG, JOB, SETTINGS, spec

SMOL = ModelFacts(model_type="llama", architectures=["LlamaForCausalLM"], parameters=134_515_008)
TEMPLATE = "meta-llama-3.1-70b-instruct-reference"


def _record(*, gpus: int, facts: ModelFacts | None = SMOL, lora: bool = False) -> ResolvedJob:
    job_spec = spec(
        model=TEMPLATE, fromHfModel="HuggingFaceTB/SmolLM2-135M-Instruct", gpus=gpus, lora={"enabled": lora}
    )
    outcome = resolve_job(
        job_spec, job_name=JOB.name, namespace=JOB.namespace, templates=CATALOG, settings=SETTINGS, facts=facts
    )
    assert outcome.job is not None, outcome.field_errors
    return outcome.job


def test_a_two_node_record_resumes_on_one_node_or_on_whole_nodes() -> None:
    record = _record(gpus=16)
    assert (record.nodes, record.gpus_per_node) == (2, 8)

    one_node = resized(record, 8, parameters=SMOL.parameters)
    assert (one_node.nodes, one_node.gpus_per_node) == (1, 8)
    assert one_node.gpu_plan is not None
    assert (one_node.gpu_plan.gpus, one_node.gpu_plan.requested, one_node.gpu_plan.max_gpus) == (8, True, 32)
    assert one_node.digest() != record.digest()
    # Everything but the resources and their plan is the record as admitted.
    assert one_node.hyperparameters == record.hyperparameters
    assert one_node.revision_sha == record.revision_sha
    assert (
        resized(record, 2, parameters=SMOL.parameters).nodes,
        resized(record, 2, parameters=SMOL.parameters).gpus_per_node,
    ) == (1, 2)
    assert (
        resized(record, 32, parameters=SMOL.parameters).nodes,
        resized(record, 32, parameters=SMOL.parameters).gpus_per_node,
    ) == (4, 8)


@pytest.mark.parametrize(("gpus", "says"), [(12, "a multiple of 8 up to 32"), (40, "a multiple of 8 up to 32")])
def test_a_count_the_record_cannot_take_is_refused_naming_spec_gpus(gpus: int, says: str) -> None:
    with pytest.raises(ValueError, match=rf"spec\.gpus {gpus} cannot resize this job.*{says}"):
        resized(_record(gpus=16), gpus, parameters=SMOL.parameters)


def test_a_one_node_record_never_grows_past_its_own_count() -> None:
    record = _record(gpus=4)
    with pytest.raises(ValueError, match=r"1 to 4 \(the job's own count on its one node\)"):
        resized(record, 8, parameters=SMOL.parameters)


def test_too_few_gpus_for_the_model_are_refused() -> None:
    # The template's own 70B model, fully fine-tuned, needs many GPUs: one is refused with the arithmetic.
    record = _record(gpus=32, facts=None)
    with pytest.raises(ValueError, match=r"spec\.gpus 1 is too few for this job: .*GiB per GPU"):
        resized(record, 1)


def test_only_a_different_count_asks_for_a_resize() -> None:
    record = _record(gpus=16)
    assert resize_request(record, None) is None
    assert resize_request(record, 16) is None
    assert resize_request(record, 8) == 8
