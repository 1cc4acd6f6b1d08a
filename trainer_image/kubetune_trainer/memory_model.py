"""How much device memory a fine-tune needs, from config.json numbers alone: no torch, no weights.

The trainer plans its micro-batch token budget with it (`plan_token_budget`, from the free memory
`torch.cuda.mem_get_info` reports once the model is on the GPU); the operator can size GPUs with
it (`estimate`), as both see only numbers. Every figure is bytes on one device.

    shape = ModelShape.from_config(json.loads(Path("config.json").read_text()))
    setup = TrainingSetup.for_run(shape, precision="bf16", master_weights="fp32", lora_rank=None)
    estimate(shape, setup, micro_batch_tokens=16384).total          # bytes at that micro-batch
    plan_token_budget(shape, setup, free_bytes=..., max_seq_length=2048)   # -> MemoryPlan

What is counted:

- **static**: weights (the whole model, at the weight dtype), gradients and AdamW state of the
  trainable parameters (m and v; an fp32 master copy or a bf16 compensation buffer where the
  precision policy keeps one), DDP's gradient buckets; divided by the shard count under FSDP.
- **activations per token**: what autograd keeps for backward in one decoder layer, times the
  layers, from hidden, intermediate, heads and KV heads (coefficients counted from the bytes a
  forward leaves allocated on Llama in transformers 5 with the trainer's lean norms and MLPs, eager
  and compiled, see docs/training.md); with gradient checkpointing one
  layer's input per layer plus one whole layer being recomputed. A mixture of experts' MLP keeps its
  bytes per routed token (`active_experts` of them) and its routing (measured on Mixtral); LoRA
  there also keeps a merged copy of each layer's stacked expert weights (`merged_expert_bytes`).
- **the loss chunk**: the head's output for `loss_chunk_tokens` positions in fp32 (turned into its
  own gradient in place) beside one copy in the compute dtype (`training.loss` never holds more),
  and the head's weight gradient, which the loss takes in its forward pass when the head trains.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from types import MappingProxyType
from typing import Any

from .contract import ModelShapeFacts, WarningNote

GIB = 1024**3
LOSS_CHUNK_LOGIT_BYTES = GIB
"""fp32 logits per loss chunk: 2,048 tokens at a 128k vocabulary, all of a micro-batch at a small one."""
MIN_LOSS_CHUNK_TOKENS = 256
RESERVE_BYTES = GIB
"""Left free besides the plan: CUDA context growth, kernels' workspaces, the allocator's fragments."""
USABLE_FRACTION = 0.9
"""Of the free memory, the share the plan may fill."""
BUDGET_CEILING_TOKENS = 65536
"""Largest micro-batch planned: past this, matmuls are no faster and a step holds fewer micro-batches."""
BUDGET_STEP_TOKENS = 1024
"""Budgets are whole multiples of this (above one sequence)."""

# Elements autograd keeps per token in one decoder layer with the trainer's lean RMSNorms and SwiGLU
# MLPs (`training.lean_layers`), counted from glibc's bytes in use after a forward on transformers 5's
# Llama (sdpa) at four shapes, fp32 and bf16 (tests/trainer/test_memory_model_plans_the_micro_batch.py):
# the norms' inputs (hidden each, `ModelShape.norms_per_layer`; their outputs, which the projections save,
# are recomputed), attention's query and output (2 x query width), its key and value (2 x KV width), the gate
# and up outputs (2 x intermediate; the product is recomputed), all at the compute dtype; in fp32 the
# norms' reciprocal roots (one per norm) and softmax statistics per head.
# LoRA adds each adapter's rank-r intermediate (7 adapters on all-linear) and keeps nothing below the
# first layer's input norm (nothing there trains); with dropout, a one-byte mask per adapter input.
_NORM_OUTPUTS_D = 2
"""Kept where the norms' outputs are not recomputed (transformers' norms; eager lean layers under
activation checkpointing)."""
_LAYER_Q = 2
_LAYER_KV = 2
_LAYER_I = 2
_LORA_ADAPTERS = 7
_MOE_LORA_ADAPTERS = 4
"""In a mixture of experts: q, k, v and o. The router and the stacked experts are adapted as parameters (peft
merges the update into the weight in the forward), which keeps nothing per token: `merged_expert_bytes`."""
_EXPERT_I = 4
_EXPERT_D = 2
_ROUTED_TOKEN_BYTES = 40
"""A mixture of experts (transformers 5's Mixtral, its default `grouped_mm` experts on CPUs as on GPUs), per
routed token: gate_up's output (2 x intermediate), the activation's output and the product (intermediate each),
the expert's input and the down projection's output (hidden each), at the compute dtype; its int64 positions
and fp32 routing weight (bytes). Measured in tests/trainer/test_memory_model_plans_the_micro_batch.py at two
shapes."""
_OUTSIDE_LAYERS_D = 1
"""The final norm's input (under LoRA the first norm's input is not kept, which cancels it)."""
_ROTARY_HEAD_DIM = 2
"""The rotary cosines and sines, head_dim each per token, shared by every layer."""


LEAN_LAYERS_OF_MODEL_TYPE: Mapping[str, tuple[bool, bool]] = MappingProxyType({
    "llama": (True, True),
    "mistral": (True, True),
    "qwen2": (True, True),
    "qwen3": (True, True),
    "mixtral": (True, False),
    "phi3": (True, False),
    "qwen2_moe": (True, True),
    "qwen3_moe": (True, True),
    "deepseek_v3": (True, True),
})  # fmt: skip
"""(lean norms, lean MLPs): what `training.lean_layers` makes of each config.json `model_type`, for a planner
that has no model to probe (the operator's GPU plan). Mixtral's experts and Phi-3's fused gate_up_proj keep
their own MLP forwards (a lean MLP in a mixture of experts is its shared expert's or a dense layer's); Gemma's
norms (`1 + weight`) and GELU MLPs keep theirs, as does any model type not listed.
tests/trainer/test_memory_model_plans_the_micro_batch.py checks the table against the probe."""


SANDWICH_NORM_MODEL_TYPES = frozenset({"gemma2", "gemma3", "gemma3_text"})
"""config.json `model_type`s whose decoder layers normalise before and after attention and the MLP (four norms)."""
GEMMA_NORM_MODEL_TYPES = frozenset({"gemma", "gemma2", "gemma3", "gemma3_text"})
"""config.json `model_type`s whose RMSNorms compute in fp32 and scale by (1 + weight)."""
LORA_STACKED_EXPERTS_MODEL_TYPES = frozenset({"mixtral", "qwen3_moe", "deepseek_v3"})
"""config.json `model_type`s whose stacked experts and router peft's all-linear adapts (checked against peft)."""
FUSED_QKV_MODEL_TYPES = frozenset({"phi3"})
"""config.json `model_type`s whose attention projects query, key and value with one linear (`qkv_proj`)."""
QK_NORM_MODEL_TYPES = frozenset({"qwen3", "qwen3_moe", "gemma3", "gemma3_text"})
"""config.json `model_type`s whose attention RMS-normalises each head's query and key (`q_norm`, `k_norm` over
head_dim): the norms keep their inputs for backward. tests/trainer/test_memory_model_plans_the_micro_batch.py
builds them and checks the modules are there."""


MEASURED_MODEL_TYPES = frozenset({
    "llama", "mistral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mixtral", "phi3", "gemma2", "gemma3",
    "gemma3_text",
})  # fmt: skip
"""config.json `model_type`s whose layers' activations the plan is checked against, in
tests/trainer/test_memory_model_plans_the_micro_batch.py and bench/planned_against_kept.py (the Gemma 3
multimodal model by its text model). Others are planned from their widths as the nearest of these, unchecked."""
UNMEASURED_PLAN = "MemoryPlanUnmeasured"


def unmeasured_plan_warning(model_type: str) -> WarningNote | None:
    """The warning a model whose architecture the memory plan was never checked against gets; None for the others."""
    if model_type in MEASURED_MODEL_TYPES:
        return None
    return WarningNote(
        reason=UNMEASURED_PLAN,
        message=f"the memory plan has not been checked against model_type {model_type}: its micro-batch and GPU "
        f"count come from config.json's widths as for {', '.join(sorted(MEASURED_MODEL_TYPES))}, and may be off; "
        "hyperparameters.autoBatchOnOOM (on by default) halves a micro-batch that runs out of memory",
    )


def query_head_dim(text: Mapping[str, Any]) -> int:
    """The width of one query (and key) head, from a (text) config.json: `head_dim`, or hidden size over heads; for
    DeepSeek's compressed attention, whose `head_dim` is the rotary part alone, `qk_nope_head_dim +
    qk_rope_head_dim`."""
    if text.get("qk_nope_head_dim") and text.get("qk_rope_head_dim"):
        return int(text["qk_nope_head_dim"]) + int(text["qk_rope_head_dim"])
    heads = int(text.get("num_attention_heads") or 1)
    return int(text.get("head_dim") or int(text["hidden_size"]) // heads)


def lean_layers_of(model_types: Iterable[str]) -> tuple[bool, bool]:
    """(lean norms, lean MLPs) for a model of any of `model_types`: lean only where every one of them is."""
    found = [LEAN_LAYERS_OF_MODEL_TYPE.get(model_type, (False, False)) for model_type in model_types]
    found = found or [(False, False)]
    return all(norms for norms, _ in found), all(mlps for _, mlps in found)


def loss_chunk_tokens(vocab_size: int) -> int:
    """Positions per loss chunk: `LOSS_CHUNK_LOGIT_BYTES` of fp32 logits, at least `MIN_LOSS_CHUNK_TOKENS`."""
    return max(MIN_LOSS_CHUNK_TOKENS, LOSS_CHUNK_LOGIT_BYTES // (4 * max(vocab_size, 1)))


@dataclass(frozen=True)
class ModelShape:
    """The numbers of config.json that memory depends on."""

    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    head_dim: int
    tied_embeddings: bool
    parameters: int
    """Parameter count: given (counted on the meta device) or estimated from the shape."""
    num_experts: int = 0
    """Experts in each mixture-of-experts MLP (config.json `num_local_experts` or `num_experts`); 0: a dense MLP.
    `intermediate_size` is then one expert's (`moe_intermediate_size` where the config has one)."""
    active_experts: int = 0
    """Experts each token is routed to (`num_experts_per_tok`)."""
    qk_norm: bool = False
    """Each attention head's query and key are RMS-normalised (Qwen3, Gemma 3: `QK_NORM_MODEL_TYPES`)."""
    sandwich_norms: bool = False
    """Each decoder layer also normalises its attention's and its MLP's outputs: four norms, not two (Gemma 2
    and 3: `SANDWICH_NORM_MODEL_TYPES`)."""
    gemma_norms: bool = False
    """The RMSNorms scale by (1 + weight) in fp32 and keep their normalised output in fp32 for the weight's
    gradient (Gemma: `GEMMA_NORM_MODEL_TYPES`); the trainer's lean norms never serve them."""
    softcapped_attention: bool = False
    """Attention logits are soft-capped (Gemma 2's `attn_logit_softcapping`): no fused kernel computes that, so
    attention runs in plain operations that keep each example's scores, which grow with its length."""
    fused_qkv: bool = False
    """Query, key and value come from one fused projection (Phi-3: `FUSED_QKV_MODEL_TYPES`), whose whole output the
    values' view keeps alive."""
    shared_expert_intermediate_size: int = 0
    """A mixture of experts' shared expert, which every token goes through besides its routed ones, gated
    (Qwen2-MoE's `shared_expert_intermediate_size`); 0: none."""
    lora_adapts_experts: bool = False
    """LoRA's all-linear adapts the router and the stacked experts as parameters (peft 0.21 does on Mixtral and
    Qwen3-MoE, not on Qwen2-MoE, whose shared expert's linears it takes instead: `LORA_STACKED_EXPERTS_MODEL_TYPES`)."""
    dense_layers: int = 0
    """In a mixture of experts, the layers whose MLP is dense instead (DeepSeek's first `first_k_dense_replace`,
    the Qwen MoEs' `mlp_only_layers` and the layers `decoder_sparse_step` skips), `dense_intermediate_size` wide."""
    dense_intermediate_size: int = 0

    @property
    def moe(self) -> bool:
        return self.num_experts > 0

    @property
    def sparse_layers(self) -> int:
        """The layers whose MLP is a mixture of experts (all of them unless some are dense); 0 in a dense model."""
        return self.num_layers - self.dense_layers if self.moe else 0

    @property
    def dense_mlp_adapted(self) -> bool:
        """Whether LoRA's all-linear adapts a dense layer's MLP: not where peft adapts the stacked experts, whose
        transformers 4 names (gate_proj, up_proj, down_proj) it then gives the experts alone."""
        return not self.lora_adapts_experts

    def dense_layer(self) -> ModelShape:
        """The shape of one of a mixture of experts' dense layers (a dense model is its own)."""
        if not self.moe:
            return self
        return replace(
            self, intermediate_size=self.dense_intermediate_size or self.intermediate_size, num_experts=0,
            active_experts=0, shared_expert_intermediate_size=0, lora_adapts_experts=False, dense_layers=0,
            dense_intermediate_size=0,
        )  # fmt: skip

    @property
    def expert_parameters(self) -> int:
        """One expert's (or a dense MLP's) gate, up and down weights."""
        return 3 * self.hidden_size * self.intermediate_size

    @property
    def active_parameters(self) -> int:
        """The parameters one token computes with: all of them but, in a mixture of experts, the experts it is not
        routed to (the N of MFU's 6N for such a model: Mixtral 8x7B's 46.7B are 12.9B a token)."""
        idle = self.num_experts - self.active_experts if self.moe else 0
        return self.parameters - self.sparse_layers * idle * self.expert_parameters

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, parameters: int | None = None) -> ModelShape:
        """From a config.json dict (a multimodal model's `text_config` when it has one)."""
        text = config.get("text_config") if isinstance(config.get("text_config"), Mapping) else config
        assert isinstance(text, Mapping)
        hidden = int(text["hidden_size"])
        heads = int(text.get("num_attention_heads") or 1)
        kv_heads = int(text.get("num_key_value_heads") or heads)
        # DeepSeek's values are narrower than its query and key heads: planned at their width too (more than
        # they are, never less).
        head_dim = query_head_dim(text)
        layers = int(text["num_hidden_layers"])
        intermediate = int(text.get("intermediate_size") or 4 * hidden)
        vocab = int(text["vocab_size"])
        tied = bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", True)))
        model_type = text.get("model_type", config.get("model_type"))
        qk_norm, sandwich = model_type in QK_NORM_MODEL_TYPES, model_type in SANDWICH_NORM_MODEL_TYPES
        gemma_norms = model_type in GEMMA_NORM_MODEL_TYPES
        softcapped = text.get("attn_logit_softcapping") is not None
        fused_qkv = model_type in FUSED_QKV_MODEL_TYPES
        experts = int(text.get("num_local_experts") or text.get("num_experts") or text.get("n_routed_experts") or 0)
        routed = int(text.get("num_experts_per_tok") or 0) if experts else 0
        adapts_experts = bool(experts) and model_type in LORA_STACKED_EXPERTS_MODEL_TYPES
        shared = dense_layers = dense_intermediate = 0
        if experts:
            dense_layers = _dense_layers_of(text, layers)
            dense_intermediate = intermediate if dense_layers else 0
            intermediate = int(text.get("moe_intermediate_size") or intermediate)
            # Qwen2-MoE names its shared expert's width; DeepSeek counts shared experts of the routed ones' width.
            shared = int(text.get("shared_expert_intermediate_size") or 0)
            shared = shared or int(text.get("n_shared_experts") or 0) * intermediate
        shape = cls(
            hidden, layers, intermediate, heads, kv_heads, vocab, head_dim, tied, parameters or 0, experts, routed,
            qk_norm, sandwich, gemma_norms, softcapped, fused_qkv, shared, adapts_experts, dense_layers,
            dense_intermediate,
        )  # fmt: skip
        return shape if parameters is not None else replace(shape, parameters=shape.estimated_parameters())

    def estimated_parameters(self) -> int:
        """The parameter count this shape gives: attention, MLP (every expert, the router), norms, embeddings
        (what it leaves out: biases, a vision tower)."""
        d, head_dim = self.hidden_size, self.head_dim
        attention = d * self.num_heads * head_dim * 2 + d * self.num_kv_heads * head_dim * 2
        mlp = self.num_experts * (self.expert_parameters + d) if self.moe else self.expert_parameters
        if self.shared_expert_intermediate_size:
            mlp += 3 * d * self.shared_expert_intermediate_size + d  # the shared expert and its gate
        norms = self.norms_per_layer * d + (2 * head_dim if self.qk_norm else 0)
        mlps = (self.num_layers - self.dense_layers) * mlp + self.dense_layers * self.dense_layer().expert_parameters
        return (
            self.num_layers * (attention + norms) + mlps + self.vocab_size * d * (1 if self.tied_embeddings else 2) + d
        )

    @property
    def norms_per_layer(self) -> int:
        return 4 if self.sandwich_norms else 2

    @classmethod
    def from_facts(cls, facts: ModelShapeFacts, *, parameters: int) -> ModelShape:
        """The shape the preflight found (`ModelFacts.shape`), with the model's counted parameters."""
        return cls(**facts.model_dump(), parameters=parameters)

    def facts(self) -> ModelShapeFacts:
        """The shape as it crosses to the operator: every field but the parameter count."""
        numbers = asdict(self)
        del numbers["parameters"]
        return ModelShapeFacts(**numbers)

    def lora_parameters(self, rank: int) -> int:
        """Adapter parameters of rank `rank` on every linear of every layer (all-linear), the head left out.

        In a mixture of experts where peft adapts them (`lora_adapts_experts`), all-linear also adapts the router
        and, through peft's parameter adapters, the stacked expert weights: rank x experts wide, the fused gate_up
        stack at twice that; a shared expert's linears and its gate are adapted as linears (as peft 0.21 makes
        them; tests/trainer/test_memory_model_plans_the_micro_batch.py counts them against peft's).
        """
        d, i = self.hidden_size, self.intermediate_size
        q, kv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        attention = rank * sum(a + b for a, b in [(d, q), (d, kv), (d, kv), (q, d)])
        if not self.moe:
            return self.num_layers * (attention + rank * (3 * (d + i)))
        mlp = 0
        if self.lora_adapts_experts:
            wide = rank * self.num_experts
            mlp += rank * (d + self.num_experts) + 2 * wide * (d + 2 * i) + wide * (i + d)
        if self.shared_expert_intermediate_size:
            mlp += rank * (3 * (d + self.shared_expert_intermediate_size) + d + 1)
        dense_mlp = rank * (3 * (d + self.dense_layer().intermediate_size)) if self.dense_mlp_adapted else 0
        return self.num_layers * attention + self.sparse_layers * mlp + self.dense_layers * dense_mlp


@dataclass(frozen=True)
class TrainingSetup:
    """How the model trains, in bytes per element and per parameter."""

    weight_bytes: int
    """Bytes per weight as held on the device (2 for bf16/fp16, 4 for fp32)."""
    compute_bytes: int
    """Bytes per activation element (2 under bf16/fp16 compute, 4 in fp32)."""
    trainable_parameters: int
    gradient_bytes: int
    """Bytes per gradient element of a trainable parameter."""
    optimizer_bytes: int
    """AdamW state per trainable parameter: m and v, plus a master copy or compensation buffer."""
    gradient_checkpointing: bool = False
    lora_rank: int = 0
    """Rank of the LoRA adapters; 0 for full fine-tuning."""
    lora_dropout: bool = False
    """LoRA dropout above 0: each adapter keeps its input's dropout mask (one byte per element)."""
    shards: int = 1
    """FSDP's world size: weights, gradients and optimizer state are divided by it."""
    ddp_buckets: bool = False
    """DDP keeps its own gradient-sized buckets."""
    lean_norms: bool = True
    """The RMSNorms run `training.lean_layers`' forward; False: transformers' own (an fp32 copy of the input
    under bf16, and the normalised output while the weight trains)."""
    lean_mlp: bool = True
    """The MLPs run the lean SwiGLU forward; False: their own (gate, activation, up and product kept)."""
    compiled: bool = False
    """The decoder layers are compiled (`training.compile`): inductor recomputes the lean norms' outputs and
    the MLP's product under activation checkpointing too, where the eager lean layers step aside."""
    attention_length: int = 0
    """The longest example (maxSeqLength): a soft-capped attention keeps scores over it for each of its tokens."""

    @classmethod
    def for_run(
        cls,
        shape: ModelShape,
        *,
        precision: str = "bf16",
        master_weights: str = "fp32",
        lora_rank: int | None = None,
        lora_dropout: bool = False,
        gradient_checkpointing: bool = False,
        shards: int = 1,
        ddp_buckets: bool = False,
        device: str = "cuda",
        lean_norms: bool = True,
        lean_mlp: bool = True,
        compiled: bool = False,
        attention_length: int = 0,
    ) -> TrainingSetup:
        """The setup the trainer uses for this template precision and master-weights policy.

        `precision` bf16/fp16/fp32 and `master_weights` fp32/bf16-compensated/bf16 as in the
        template; on a CPU everything is fp32. Under LoRA the base is frozen (no gradient, no
        state) and the adapters train in fp32.
        """
        low = device == "cuda" and precision in ("bf16", "fp16")
        compute = 2 if low else 4
        weight = 2 if device == "cuda" and precision == "bf16" else 4
        layers = {"lean_norms": lean_norms, "lean_mlp": lean_mlp, "compiled": compiled}
        if lora_rank is not None:
            trainable = shape.lora_parameters(lora_rank)
            return cls(
                weight, compute, trainable, 4, 8, gradient_checkpointing, lora_rank, lora_dropout, shards, ddp_buckets,
                **layers, attention_length=attention_length,
            )  # fmt: skip
        # m and v in fp32 plus a master copy (4) or a compensation buffer (2); pure bf16 keeps bf16 m and v.
        optimizer = 8 if weight == 4 else {"fp32": 12, "bf16-compensated": 10, "bf16": 4}.get(master_weights, 12)
        return cls(
            weight, compute, shape.parameters, weight, optimizer, gradient_checkpointing, 0, False, shards, ddp_buckets,
            **layers, attention_length=attention_length,
        )  # fmt: skip


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes on one device for one micro-batch size."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    loss_chunk: int

    @property
    def static(self) -> int:
        return self.weights + self.gradients + self.optimizer

    @property
    def total(self) -> int:
        return self.static + self.activations + self.loss_chunk


def activation_bytes_per_token(shape: ModelShape, setup: TrainingSetup) -> int:
    """What backward keeps per token of a micro-batch, every layer together."""
    d, compute, fp32 = shape.hidden_size, setup.compute_bytes, 4
    outside = (_OUTSIDE_LAYERS_D * d + _ROTARY_HEAD_DIM * shape.head_dim) * compute
    if setup.lora_rank:
        outside -= d * compute
    if not setup.lean_norms:
        # transformers' final RMSNorm keeps its input's fp32 copy, and its normalised output while its weight trains;
        # under LoRA the first layer's input norm keeps nothing, which cancels it.
        output = fp32 if shape.gemma_norms else compute
        outside += 0 if setup.lora_rank else d * (fp32 - compute) + d * output
    kinds = [
        (count, _layer_bytes(kind, setup, mlp_adapted=adapted), kind) for count, kind, adapted in _layer_kinds(shape)
    ]
    if setup.gradient_checkpointing:
        # Each layer keeps its input; one layer at a time is recomputed whole in backward, keeping its
        # MLP's product too (the eager lean MLP recomputes it only where no other saved-tensor hook is in
        # force; a compiled one always does): the largest layer's.
        recomputed = max(layer + _product_bytes(kind, setup) for count, layer, kind in kinds if count)
        return shape.num_layers * d * compute + recomputed + outside
    return sum(count * layer for count, layer, _ in kinds) + outside


def _layer_kinds(shape: ModelShape) -> list[tuple[int, ModelShape, bool]]:
    """(how many, the shape of one, whether LoRA's all-linear adapts its MLP's linears) for each kind of decoder
    layer: a mixture of experts' sparse ones, and its dense ones (`ModelShape.dense_mlp_adapted`)."""
    return [
        (shape.num_layers - shape.dense_layers, shape, True),
        (shape.dense_layers, shape.dense_layer(), shape.dense_mlp_adapted),
    ]


def _product_bytes(shape: ModelShape, setup: TrainingSetup) -> int:
    """A lean MLP's product (a shared expert's in a mixture of experts), kept while its layer is recomputed."""
    width = shape.shared_expert_intermediate_size if shape.moe else shape.intermediate_size
    return width * setup.compute_bytes if setup.lean_mlp and not setup.compiled else 0


def _layer_bytes(shape: ModelShape, setup: TrainingSetup, *, mlp_adapted: bool = True) -> int:
    """What backward keeps per token of one decoder layer of `shape` (a mixture of experts' sparse layer, or a
    dense one)."""
    d, kv = shape.hidden_size, shape.num_kv_heads * shape.head_dim
    q = shape.num_heads * shape.head_dim
    compute, fp32 = setup.compute_bytes, 4
    # The lean norms' outputs are recomputed in backward (`training.lean_layers`: inside a lean decoder layer
    # eagerly, in compiled ones by inductor), except by eager layers under activation checkpointing, whose
    # own saved-tensor hooks the recomputation steps aside for.
    norm_outputs_recomputed = setup.lean_norms and (setup.compiled or not setup.gradient_checkpointing)
    norms = shape.norms_per_layer
    elements = norms * d + _LAYER_Q * q + _LAYER_KV * kv + _mlp_elements(shape, setup)
    if not norm_outputs_recomputed:
        elements += _NORM_OUTPUTS_D * d
    layer = (
        elements * compute
        + (norms + shape.num_heads) * fp32
        + _routing_bytes(shape)
        + _attention_extra_bytes(shape, setup)
        + _lora_bytes(shape, setup, mlp_adapted=mlp_adapted)
    )
    if not setup.lean_norms:
        # transformers' RMSNorm keeps its input's fp32 copy, and its normalised output while its weight trains
        # (Gemma's in fp32, Llama's at the compute dtype).
        output = fp32 if shape.gemma_norms else compute
        normed = d * norms + (q + kv if shape.qk_norm else 0)
        layer += normed * (fp32 - compute) + (0 if setup.lora_rank else normed * output)
    return layer


def _mlp_elements(shape: ModelShape, setup: TrainingSetup) -> int:
    """What one layer's MLP keeps per token, in elements of the compute dtype."""
    d, i = shape.hidden_size, shape.intermediate_size
    if not shape.moe:
        # The gate and up outputs; transformers' own MLP also the activation's output and the product.
        return _LAYER_I * i if setup.lean_mlp else 2 * _LAYER_I * i
    # Each routed token: the expert's input, gate_up's output, the activation's output, the product,
    # the down projection's output (kept for the routing weight's gradient); the routing itself in fp32.
    # Frozen experts (LoRA that does not adapt them) keep neither the input nor the product.
    frozen = bool(setup.lora_rank) and not shape.lora_adapts_experts
    kept_i, kept_d = (_EXPERT_I - 1, _EXPERT_D - 1) if frozen else (_EXPERT_I, _EXPERT_D)
    elements = shape.active_experts * (kept_i * i + kept_d * d)
    if shape.shared_expert_intermediate_size:
        # The shared expert is a dense MLP (lean where the trainer makes it so), and its gated output is kept.
        width = shape.shared_expert_intermediate_size
        elements += (_LAYER_I if setup.lean_mlp else 2 * _LAYER_I) * width + d
    return elements


def _attention_extra_bytes(shape: ModelShape, setup: TrainingSetup) -> int:
    """What one layer's attention keeps per token beyond a Llama's: query and key norms, a fused projection's
    whole output, a soft-capped attention's scores."""
    d, q, kv = shape.hidden_size, shape.num_heads * shape.head_dim, shape.num_kv_heads * shape.head_dim
    compute, fp32 = setup.compute_bytes, 4
    extra = 0
    if shape.qk_norm:
        # Each head's query and key norm keeps its input, and its reciprocal root in fp32 (as the layer norms do).
        extra += (q + kv) * compute + (shape.num_heads + shape.num_kv_heads) * fp32
    if shape.fused_qkv:
        # The fused projection's output stays whole while attention keeps the values' view of it: query and key
        # widths more; and one hidden-width tensor more (measured on transformers 5's Phi-3, whose query width
        # is its hidden size: bench/planned_against_kept.py).
        extra += (q + kv + d) * compute
    if shape.softcapped_attention:
        # Per head, the scores over the token's example: the soft-cap's tanh output, the fp32 softmax and, below
        # fp32, the weights cast back for the product with the values.
        extra += shape.num_heads * setup.attention_length * (fp32 + compute + (compute if compute < fp32 else 0))
    return extra


def _lora_bytes(shape: ModelShape, setup: TrainingSetup, *, mlp_adapted: bool = True) -> int:
    """What one layer's adapters keep per token: each one's rank-r intermediate and, with dropout, a one-byte mask
    over its input. `mlp_adapted` False: a dense MLP that all-linear leaves alone (`_layer_kinds`)."""
    if not setup.lora_rank:
        return 0
    d, i = shape.hidden_size, shape.intermediate_size
    q = shape.num_heads * shape.head_dim
    shared = shape.shared_expert_intermediate_size
    adapters = _LORA_ADAPTERS if mlp_adapted else _MOE_LORA_ADAPTERS
    if shape.moe:
        # q, k, v, o; a shared expert's three linears and its gate are adapted as linears too.
        adapters = _MOE_LORA_ADAPTERS + (4 if shared else 0)
    kept = adapters * setup.lora_rank * setup.compute_bytes
    if setup.lora_dropout:
        # q, k, v, gate and up take the hidden state, o the attention output, down the intermediate
        # (`training.lora_fused` keeps no dropped-out copy). In a mixture of experts only q, k, v and o (and a
        # shared expert's linears and gate) take dropout: peft refuses it on the stacked experts.
        if shape.moe:
            kept += 3 * d + q + (3 * d + shared if shared else 0)
        else:
            kept += 3 * d + q + (2 * d + i if mlp_adapted else 0)
    return kept


def _dense_layers_of(text: Mapping[str, Any], layers: int) -> int:
    """How many of a mixture of experts' `layers` have a dense MLP, as transformers builds them: DeepSeek's first
    `first_k_dense_replace`; in the Qwen MoEs those in `mlp_only_layers` and those `decoder_sparse_step` skips (a
    layer is sparse when its number plus one is a multiple of the step)."""
    first_dense = int(text.get("first_k_dense_replace") or 0)
    mlp_only = set(text.get("mlp_only_layers") or [])
    step = int(text.get("decoder_sparse_step") or 1)
    return sum(1 for layer in range(layers) if layer < first_dense or layer in mlp_only or (layer + 1) % step)


def _routing_bytes(shape: ModelShape) -> int:
    """A mixture of experts' routing, per token: the fp32 routing probabilities (one per expert) and, per routed
    token, its int64 positions and fp32 weight (40 bytes, measured on transformers 5's Mixtral)."""
    return 4 * shape.num_experts + _ROUTED_TOKEN_BYTES * shape.active_experts + 4 if shape.moe else 0


def merged_expert_bytes(shape: ModelShape, setup: TrainingSetup) -> int:
    """What LoRA on a mixture of experts keeps besides the activations, where peft adapts the stacked experts
    (`ModelShape.lora_adapts_experts`): it adds the low-rank product to each layer's stacked expert weights in the
    forward (`torch.nn.utils.parametrize`), and autograd
    keeps that merged copy (the whole layer's, at the weight dtype, under FSDP too) until the layer's backward:
    every layer's, or under activation checkpointing the one layer being recomputed."""
    if not (setup.lora_rank and shape.moe and shape.lora_adapts_experts):
        return 0
    layers = 1 if setup.gradient_checkpointing else shape.sparse_layers
    return layers * shape.num_experts * shape.expert_parameters * setup.weight_bytes


def loss_chunk_bytes(shape: ModelShape, setup: TrainingSetup, *, micro_batch_tokens: int) -> int:
    """The loss's largest transient: one chunk's fp32 logits, which become their gradient in place, beside
    one copy in a narrower compute dtype (the logits before the upcast, the gradient after); and, when the
    head trains, its weight's gradient, taken in the forward and kept until backward
    (`training.linear_cross_entropy`)."""
    tokens = min(micro_batch_tokens, loss_chunk_tokens(shape.vocab_size))
    head_gradient = 0 if setup.lora_rank else shape.vocab_size * shape.hidden_size * setup.gradient_bytes
    narrow_copy = setup.compute_bytes if setup.compute_bytes < 4 else 0  # in fp32 the logits are the fp32 buffer
    return tokens * shape.vocab_size * (4 + narrow_copy) + head_gradient


def estimate(shape: ModelShape, setup: TrainingSetup, *, micro_batch_tokens: int) -> MemoryEstimate:
    """Peak bytes on one device for micro-batches of `micro_batch_tokens` tokens."""
    trainable = setup.trainable_parameters
    gradients = trainable * setup.gradient_bytes * (2 if setup.ddp_buckets else 1)
    return MemoryEstimate(
        weights=shape.parameters * setup.weight_bytes // setup.shards,
        gradients=gradients // setup.shards,
        optimizer=trainable * setup.optimizer_bytes // setup.shards,
        activations=activation_bytes_per_token(shape, setup) * micro_batch_tokens + merged_expert_bytes(shape, setup),
        loss_chunk=loss_chunk_bytes(shape, setup, micro_batch_tokens=micro_batch_tokens),
    )


@dataclass(frozen=True)
class MemoryPlan:
    """The micro-batch token budget chosen, and the figures it was chosen from (bytes)."""

    token_budget: int
    free_bytes: int
    static_bytes: int
    activation_bytes_per_token: int
    loss_chunk_bytes: int
    limited_by: str
    """`memory` (what fits), `ceiling` (BUDGET_CEILING_TOKENS), `sequence` (one maxSeqLength, the least
    that holds the longest example) or `cpu` (one maxSeqLength, the CPU rule)."""

    def describe(self) -> str:
        return (
            f"micro-batch budget {self.token_budget} tokens ({self.limited_by}): {self.free_bytes / GIB:.1f} GiB free, "
            f"{self.static_bytes / GIB:.1f} GiB set aside (gradients, optimizer state), "
            f"{self.activation_bytes_per_token / 1024:.0f} KiB activations per token, "
            f"{self.loss_chunk_bytes / GIB:.2f} GiB loss chunk"
        )


def plan_token_budget(
    shape: ModelShape,
    setup: TrainingSetup,
    *,
    free_bytes: int,
    max_seq_length: int,
    weights_resident: bool = True,
    ceiling: int = BUDGET_CEILING_TOKENS,
) -> MemoryPlan:
    """The largest micro-batch (tokens) whose activations fit `free_bytes` beside what training adds.

    `free_bytes` is measured with the weights already on the device (`weights_resident`), so
    only gradients and optimizer state (and LoRA's merged experts) are taken off it; otherwise the weights
    are too. Never
    below one `max_seq_length` (the longest example must fit a micro-batch; out-of-memory
    remediation is the safety net) nor above `ceiling`.
    """
    full = estimate(shape, setup, micro_batch_tokens=1)
    static = (
        full.gradients + full.optimizer + (0 if weights_resident else full.weights) + merged_expert_bytes(shape, setup)
    )
    per_token = activation_bytes_per_token(shape, setup)
    chunk = loss_chunk_bytes(shape, setup, micro_batch_tokens=ceiling)
    room = int(free_bytes * USABLE_FRACTION) - RESERVE_BYTES - static - chunk
    fits = max(room // max(per_token, 1), 0)
    floor = max_seq_length
    ceiling = max(ceiling, floor)
    if fits >= ceiling:
        budget, limited = ceiling, "ceiling"
    elif fits <= floor:
        budget, limited = floor, "sequence"
    else:
        budget, limited = max(floor, fits // BUDGET_STEP_TOKENS * BUDGET_STEP_TOKENS), "memory"
    return MemoryPlan(budget, free_bytes, static, per_token, chunk, limited)
