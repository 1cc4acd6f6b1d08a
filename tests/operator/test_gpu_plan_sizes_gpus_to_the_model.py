"""The GPU planner: the fewest GPUs of a template's maximum that fit the model, checked against published figures.

Published figures used:
- ZeRO (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models",
  SC20, arXiv:1910.02054, section 3.1 and figure 1): mixed-precision Adam keeps 2 (fp16 weights)
  + 2 (fp16 gradients) + 12 (fp32 master weights, momentum, variance) = 16 bytes per parameter;
  a 7.5B model needs 120 GB unsharded, and 1.9 GB per device when all three are partitioned
  over 64 devices (ZeRO stage 3, "Pos+g+p", figure 1).
- Llama-2-7B (Touvron et al. 2023, arXiv:2307.09288; 6,738,415,616 parameters in the template):
  16 bytes x 6.74B = 108 GB of weights, gradients and AdamW state, more than one 80 GB GPU holds.
"""

from __future__ import annotations

import pytest

from kubetune_operator.api.resources import BaseModelTemplate
from kubetune_operator.api.template import BaseModelTemplateSpec
from kubetune_operator.resolve.catalog import load_catalog
from kubetune_operator.resolve.gpu_plan import (
    GB,
    gpu_memory_bytes,
    plan_gpus,
    quantity_bytes,
    shape_for_parameters,
    template_plans,
)
from kubetune_operator.resolve.resize import resized
from kubetune_operator.resolve.resolution import resolve_job, status_resolved
from kubetune_trainer.contract import ModelFacts, Strategy
from kubetune_trainer.memory_model import ModelShape, TrainingSetup, estimate

from .core_builders import CATALOG, JOB, SETTINGS, spec

ZERO_MODEL_PARAMETERS = 7_500_000_000
SMOL_PARAMETERS = 134_515_008


def _template(name: str, **resources: object) -> BaseModelTemplateSpec:
    found = load_catalog().find(name)
    assert found is not None
    if not resources:
        return found.spec
    return found.spec.model_copy(update={"resources": found.spec.resources.model_copy(update=resources)})


def test_mixed_precision_adamw_holds_16_bytes_per_parameter_as_in_the_zero_paper() -> None:
    shape = shape_for_parameters(ZERO_MODEL_PARAMETERS)
    setup = TrainingSetup.for_run(shape, precision="bf16", master_weights="fp32", lora_rank=None)
    static = estimate(shape, setup, micro_batch_tokens=1).static
    assert static == 16 * ZERO_MODEL_PARAMETERS
    assert static == 120 * GB  # ZeRO figure 1, baseline


def test_sharding_over_64_gpus_divides_the_16_bytes_as_zero_stage_3_does() -> None:
    shape = shape_for_parameters(ZERO_MODEL_PARAMETERS)
    setup = TrainingSetup.for_run(shape, precision="bf16", master_weights="fp32", lora_rank=None, shards=64)
    static = estimate(shape, setup, micro_batch_tokens=1).static
    assert static / GB == pytest.approx(1.875, abs=0.01)  # ZeRO figure 1, Pos+g+p: 1.9 GB


def test_llama_2_7b_full_fine_tune_needs_more_than_one_80gb_gpu() -> None:
    llama = _template("llama-2-7b-chat")
    plan = plan_gpus(llama, lora_rank=None)
    assert plan.gpu_memory_bytes == 80 * GB
    assert plan.fits
    assert plan.gpus > 1
    # The static memory unsharded is the 108 GB the ZeRO arithmetic gives: over 80 GB before activations.
    assert plan.static_bytes * plan.gpus >= 16 * llama.parameters - plan.gpus
    unsharded = plan_gpus(llama, lora_rank=None, strategy=Strategy.DDP)
    assert unsharded.gpus == 1
    assert not unsharded.fits
    assert "does not fit" in unsharded.describe()


def test_a_135m_model_never_holds_8_gpus() -> None:
    llama = _template("llama-2-7b-chat")
    assert llama.resources.gpus_per_node == 8
    for how, plan in template_plans(llama, parameters=SMOL_PARAMETERS, max_positions=8192):
        assert (how, plan.gpus, plan.nodes, plan.fits) == (how, 1, 1, True)


def test_lora_on_a_7b_model_fits_one_gpu_where_full_training_does_not() -> None:
    plans = dict(template_plans(_template("llama-2-7b-chat")))
    assert plans["LoRA r=64"].gpus == 1
    assert plans["full"].gpus > 1


def test_lora_dropout_s_masks_are_planned_as_activations() -> None:
    llama = _template("llama-2-7b-chat")
    plain = plan_gpus(llama, lora_rank=64)
    dropped = plan_gpus(llama, lora_rank=64, lora_dropout=True)
    # One byte per adapter input element: 5 x 4096 + 4096 + 11008 bytes per layer and token, of the
    # one layer recomputed at a time (the template checkpoints activations), or of all 32.
    layers = 1 if plain.gradient_checkpointing else 32
    masks = layers * (5 * 4096 + 4096 + 11008) * llama.max_seq_length
    assert dropped.gradient_checkpointing == plain.gradient_checkpointing
    assert dropped.activation_bytes - plain.activation_bytes == masks


def test_a_gemma_template_is_sized_with_the_activations_transformers_own_layers_keep() -> None:
    """The trainer's lean norms and MLPs do not serve Gemma (`1 + weight` norms, GELU MLPs): its micro-batch keeps
    more per token than a Llama-typed template of the same size, and only the activations differ."""
    gemma = _template("gemma-2-9b-it")
    typed_llama = gemma.model_copy(
        update={"architecture": gemma.architecture.model_copy(update={"model_types": ["llama"]})}
    )
    for lora_rank in (None, 64):
        for seq in (1024, gemma.max_seq_length):
            own = plan_gpus(gemma, lora_rank=lora_rank, max_seq_length=seq)
            lean = plan_gpus(typed_llama, lora_rank=lora_rank, max_seq_length=seq)
            assert own.gradient_checkpointing == lean.gradient_checkpointing
            assert own.static_bytes == lean.static_bytes
            assert own.activation_bytes > lean.activation_bytes


def test_past_one_node_only_whole_nodes_are_planned() -> None:
    mixtral = _template("mixtral-8x7b-instruct-v0.1")
    assert (mixtral.resources.nodes, mixtral.resources.gpus_per_node) == (2, 8)
    plan = plan_gpus(mixtral, lora_rank=None, max_seq_length=4096)
    assert plan.gpus > 8
    assert plan.gpus == plan.nodes * 8


def test_activation_checkpointing_is_turned_on_only_when_the_gpu_count_needs_it() -> None:
    small = _template("llama-3.2-1b-instruct")
    assert not small.training.gradient_checkpointing
    short = plan_gpus(small, lora_rank=None, max_seq_length=2048)
    assert not short.gradient_checkpointing
    long = plan_gpus(small, lora_rank=None, max_seq_length=131072)
    assert long.gradient_checkpointing
    assert long.fits


def test_the_job_can_ask_for_more_gpus_but_never_fewer_than_fit_nor_past_the_maximum() -> None:
    llama = _template("llama-2-7b-chat")
    needed = plan_gpus(llama, lora_rank=None).gpus
    more = plan_gpus(llama, lora_rank=None, requested_gpus=8)
    assert (more.gpus, more.requested) == (8, True)
    fewer = plan_gpus(llama, lora_rank=None, requested_gpus=1)
    assert (fewer.gpus, fewer.requested) == (needed, False)
    with pytest.raises(ValueError, match=r"spec\.gpus 12"):
        plan_gpus(llama, lora_rank=None, requested_gpus=12)


def test_memory_per_gpu_comes_from_the_field_else_the_product_else_80gb() -> None:
    assert gpu_memory_bytes(_template("llama-2-7b-chat")) == 80 * GB
    assert gpu_memory_bytes(_template("llama-2-7b-chat", gpu_product="NVIDIA-H200")) == 141 * GB
    assert gpu_memory_bytes(_template("llama-2-7b-chat", gpu_product="NVIDIA-A100-SXM4-40GB")) == 40 * GB
    assert gpu_memory_bytes(_template("llama-2-7b-chat", gpu_product=None)) == 80 * GB
    assert gpu_memory_bytes(_template("llama-2-7b-chat", gpu_memory="24Gi")) == 24 * 1024**3
    assert quantity_bytes("141G") == 141 * GB
    with pytest.raises(ValueError, match=r"resources\.gpuMemory"):
        quantity_bytes("lots")
    # A bigger GPU needs fewer of them.
    big = plan_gpus(_template("llama-2-7b-chat", gpu_product="NVIDIA-H200"), lora_rank=None)
    assert big.gpus < plan_gpus(_template("llama-2-7b-chat"), lora_rank=None).gpus


def test_the_plan_is_recorded_in_status_resolved_and_a_bad_gpus_names_the_field() -> None:
    facts = ModelFacts(model_type="llama", architectures=["LlamaForCausalLM"], parameters=SMOL_PARAMETERS)
    # Full fine-tuning: the template's own 6.7B needs several GPUs; the preflight's 135M needs one.
    job_spec = spec(model="llama-2-7b-chat", fromHfModel="HuggingFaceTB/SmolLM2-135M-Instruct", lora={"enabled": False})
    before = resolve_job(job_spec, job_name=JOB.name, namespace=JOB.namespace, templates=CATALOG, settings=SETTINGS)
    assert before.job is not None
    assert before.job.gpu_plan is not None
    assert before.job.gpu_plan.gpus > 1
    outcome = resolve_job(
        job_spec, job_name=JOB.name, namespace=JOB.namespace, templates=CATALOG, settings=SETTINGS, facts=facts
    )
    assert outcome.job is not None
    resolved = status_resolved(outcome.job, facts, record=True)
    assert resolved.gpu_plan is not None
    assert resolved.gpu_plan.gpus == 1
    assert (resolved.nodes, resolved.gpus_per_node) == (1, 1)
    assert resolved.record is not None
    assert resolved.record.resources.gpus_per_node == 1  # what every attempt's pods are rendered from
    wire = resolved.to_wire()
    assert wire["gpuPlan"]["gpus"] == 1
    asked = spec(model="llama-2-7b-chat", fromHfModel="HuggingFaceTB/SmolLM2-135M-Instruct", gpus=64)
    refused = resolve_job(
        asked, job_name=JOB.name, namespace=JOB.namespace, templates=CATALOG, settings=SETTINGS, facts=facts
    )
    assert refused.job is None
    assert any(error.startswith("spec.gpus") for error in refused.field_errors)


# What the catalog's shapes leave out of the parameter count: Qwen2.5's q, k and v biases, Gemma 3's vision tower
# (its template trains the whole multimodal model, 4.30B).
SHAPE_LEAVES_OUT = {"qwen2.5-7b-instruct": 129_024, "gemma-3-4b-it": 419_816_304}


@pytest.mark.parametrize("template", load_catalog().templates, ids=lambda template: template.name)
def test_each_catalog_template_s_shape_gives_back_its_parameter_count(template: BaseModelTemplate) -> None:
    """The shape in the template is its model's (the preflight reads the same from the stored config.json:
    tests/trainer/test_model_rules_from_config.py): layers, widths, experts and norms add up to the parameters
    counted from the weights."""
    shape = template.spec.architecture.shape
    assert shape is not None
    estimated = ModelShape.from_facts(shape, parameters=0).estimated_parameters()
    assert template.spec.parameters - estimated == SHAPE_LEAVES_OUT.get(template.name, 0)


def test_a_mixture_of_experts_is_planned_with_its_experts_not_as_a_dense_model_of_its_size() -> None:
    """Mixtral's 46.7B parameters are 32 layers of 4,096 with two of eight experts a token, not the dense decoder
    of 46.7B (62 layers of 7,936) the planner assumed from the count: its full fine-tune fits 16 GPUs, and its
    LoRA (which keeps each layer's merged experts besides) takes 3 where the dense guess took 4."""
    mixtral = _template("mixtral-8x7b-instruct-v0.1")
    guessed = mixtral.model_copy(update={"architecture": mixtral.architecture.model_copy(update={"shape": None})})
    full = plan_gpus(mixtral, lora_rank=None)
    assert (full.gpus, full.fits) == (16, True)
    assert (plan_gpus(guessed, lora_rank=None).gpus, plan_gpus(guessed, lora_rank=None).fits) == (16, False)
    lora, lora_guessed = plan_gpus(mixtral, lora_rank=64), plan_gpus(guessed, lora_rank=64)
    assert (lora.gpus, lora_guessed.gpus) == (3, 4)
    assert full.activation_bytes < plan_gpus(guessed, lora_rank=None).activation_bytes


def test_the_preflight_s_shape_of_the_model_plans_the_job_and_its_resize() -> None:
    """The model trained is sized by its own config.json numbers (the preflight's), recorded in status.resolved,
    and a resize sizes with them again; without them, the template's shape (or, for a model of another size, a
    Llama-like guess) stands in."""
    smol_shape = ModelShape.from_config(SMOL_CONFIG)
    facts = ModelFacts(
        model_type="llama", architectures=["LlamaForCausalLM"], parameters=smol_shape.parameters,
        shape=smol_shape.facts(),
    )  # fmt: skip
    job_spec = spec(model="llama-2-7b-chat", fromHfModel="HuggingFaceTB/SmolLM2-135M-Instruct", lora={"enabled": False})
    outcome = resolve_job(
        job_spec, job_name=JOB.name, namespace=JOB.namespace, templates=CATALOG, settings=SETTINGS, facts=facts
    )
    assert outcome.job is not None
    assert outcome.job.gpu_plan is not None
    resolved = status_resolved(outcome.job, facts, record=True)
    assert resolved.model_shape == smol_shape.facts()
    assert resolved.to_wire()["modelShape"]["hiddenSize"] == 576
    guessed = shape_for_parameters(smol_shape.parameters)
    assert (guessed.hidden_size, guessed.num_layers) != (smol_shape.hidden_size, smol_shape.num_layers)
    plan = outcome.job.gpu_plan
    activations = plan.activation_bytes
    assert resolved.record is not None
    again = resized(resolved.record, 1, parameters=resolved.parameters, shape=resolved.model_shape)
    assert again.gpu_plan is not None
    assert again.gpu_plan.activation_bytes == activations  # the same model, the same activations
    unknown = resized(resolved.record, 1, parameters=resolved.parameters)
    assert unknown.gpu_plan is not None
    assert unknown.gpu_plan.activation_bytes != activations  # a Llama-like guess of 135M


SMOL_CONFIG = {
    "hidden_size": 576, "num_hidden_layers": 30, "intermediate_size": 1536, "num_attention_heads": 9,
    "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True,
}  # fmt: skip
"""HuggingFaceTB/SmolLM2-135M-Instruct's config.json numbers (134,515,008 parameters)."""
