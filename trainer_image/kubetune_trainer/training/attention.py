"""Attention for packed rows: each example attends only to itself, and no dense mask is ever built.

A packed micro-batch is one row holding several examples (`data.packing.collate_packed`). Through
transformers' own sdpa path such a row costs a dense block-diagonal mask of rows x rows per
forward, and sdpa's slow masked kernel in every layer (29.7 ms per layer on an H200 for a 16k
row, against 2.35 ms for a document-masked kernel). Instead the packing records the examples'
boundaries as cumulative lengths, under transformers' own names (`cu_seq_lens_q`/`_k`,
`max_length_q`/`_k`); the model hands those keyword arguments to every attention layer, and the
attention implementation registered here uses them:

- varlen: `torch.nn.attention.varlen.varlen_attn`, the flash kernel over variable-length
  sequences, given the cumulative lengths directly (CUDA, bf16 or fp16);
- flex: `flex_attention`, compiled, with a document `BlockMask` built once per micro-batch and
  shared by every layer (CUDA; on a CPU torch has no flex backward);
- sdpa: `scaled_dot_product_attention` once per example, causal (any device). On a CPU it is
  the fastest exact path: the attention of the examples alone, with no mask.

Rows that are not packed (padded micro-batches carry an attention mask; a single sequence needs
none) go through transformers' sdpa exactly as before. `choose_attention` picks the kernel: the
template's choice or, for `auto`, the first of varlen, flex and sdpa that this device, dtype and
model can run. A candidate is first run once on small random tensors, forward and backward, and
compared with the per-example sdpa; one that fails or differs falls back to the next, and the
reason is kept for the log and the Result.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from ..contract import AttentionKernel
from ..memory_model import query_head_dim

log = logging.getLogger(__name__)

ORDER: tuple[AttentionKernel, ...] = (AttentionKernel.VARLEN, AttentionKernel.FLEX, AttentionKernel.SDPA)
"""`auto` takes the first of these that runs; an explicit choice falls back along the same order."""
PROBE_LENGTHS = (37, 91)
"""The example lengths of the probe row: two documents, neither a multiple of a kernel's block."""


_IMPLEMENTATION_NAMES = {
    AttentionKernel.VARLEN: "kubetune_varlen",
    AttentionKernel.FLEX: "kubetune_flex",
    AttentionKernel.SDPA: "kubetune_per_example",
}


def implementation_name(kernel: AttentionKernel) -> str:
    """The name under which `kernel` is registered with transformers' AttentionInterface.

    No name holds `sdpa`, `flex_attention` or `flash_attention`: transformers checks a model's support for those
    by substring, and Gemma 2 (no sdpa, for its soft-capped logits) refused `kubetune_sdpa` at Initialization.
    """
    return _IMPLEMENTATION_NAMES[kernel]


# --------------------------------------------------------------------------- document boundaries


def cumulative_lengths(lengths: list[int]) -> torch.Tensor:
    """[0, l0, l0 + l1, ...] as int32: the `cu_seqlens` form flash kernels take."""
    return torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)


def documents_from_positions(position_ids: torch.Tensor) -> torch.Tensor | None:
    """Cumulative lengths of a packed row read from its positions (restarting at 0), or None for one sequence.

    The trainer passes the boundaries explicitly; this is the safety net for a caller that gives
    only `position_ids` (it costs a device sync per layer, so it is never the normal path).
    """
    if position_ids.dim() != 2 or position_ids.shape[0] != 1:
        return None
    starts = (position_ids[0] == 0).nonzero().flatten()
    if starts.numel() <= 1:
        return None
    ends = torch.tensor([position_ids.shape[1]], device=starts.device)
    return torch.cat([starts, ends]).to(torch.int32)


# --------------------------------------------------------------------------- the kernels


@dataclass(frozen=True)
class _VarlenApi:
    """What the installed torch's varlen_attn accepts (its signature changed between 2.10 and 2.11)."""

    function: Callable[..., Any]
    window: bool
    """window_size=(left, right); else is_causal=True (torch 2.10)."""
    gqa: bool
    scale: bool


_RESOLVED: dict[str, Any] = {}
"""What is looked up once per process (the varlen API, the compiled flex_attention). Not functools.cache:
the compiled decoder layers trace these lookups, and dynamo warns of every lru_cache it meets."""


def _varlen_api() -> _VarlenApi | None:
    if "varlen" not in _RESOLVED:
        _RESOLVED["varlen"] = _find_varlen_api()
    api: _VarlenApi | None = _RESOLVED["varlen"]
    return api


def _find_varlen_api() -> _VarlenApi | None:
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: PLC0415 (absent before torch 2.10)
    except ImportError:
        return None
    parameters = inspect.signature(varlen_attn).parameters
    return _VarlenApi(
        function=varlen_attn,
        window="window_size" in parameters,
        gqa="enable_gqa" in parameters,
        scale="scale" in parameters,
    )


def _repeat_heads(tensor: torch.Tensor, groups: int, *, dim: int) -> torch.Tensor:
    return tensor if groups == 1 else tensor.repeat_interleave(groups, dim=dim)


def varlen_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_lens: torch.Tensor,
    max_length: int,
    *,
    scale: float,
    window: int | None,
) -> torch.Tensor:
    """[1, heads, T, dim] in, [1, T, heads, dim] out: causal attention within each document.

    The flash kernel takes one head size for query, key and value: values narrower than the query's heads
    (DeepSeek's compressed attention: 192 for query and key, 128 for values) are padded with zeros and the
    output's padding is dropped, which leaves both the output and every gradient exact.
    """
    api = _varlen_api()
    if api is None:
        raise RuntimeError("this torch has no torch.nn.attention.varlen")
    value_dim = value.shape[-1]
    if value_dim < query.shape[-1]:
        value = functional.pad(value, (0, query.shape[-1] - value_dim))
    q, k, v = (tensor[0].transpose(0, 1) for tensor in (query, key, value))  # [T, heads, dim]
    groups = q.shape[1] // k.shape[1]
    options: dict[str, Any] = {}
    if api.gqa:
        options["enable_gqa"] = groups > 1
    else:
        k, v = _repeat_heads(k, groups, dim=1), _repeat_heads(v, groups, dim=1)
    if api.scale:
        options["scale"] = scale
    else:
        q = q * (scale * math.sqrt(q.shape[-1]))  # the kernel's own scale is 1/sqrt(dim)
    if api.window:
        options["window_size"] = (window - 1 if window else -1, 0)
    elif window:
        raise RuntimeError("this torch's varlen_attn has no sliding window")
    else:
        options["is_causal"] = True
    cu = cu_seq_lens.to(device=q.device, dtype=torch.int32)
    out: torch.Tensor = api.function(q, k, v, cu, cu, max_length, max_length, **options)
    return out[..., :value_dim].unsqueeze(0)


def _compiled_flex() -> Callable[..., Any]:
    if "flex" not in _RESOLVED:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: PLC0415

        # Compiled once per process; shapes change with every micro-batch, so dynamic from the start.
        _RESOLVED["flex"] = torch.compile(flex_attention, dynamic=True)
    compiled: Callable[..., Any] = _RESOLVED["flex"]
    return compiled


class _BlockMasks:
    """The last micro-batch's BlockMask: every layer (and a checkpointed layer's recompute) reuses it."""

    def __init__(self) -> None:
        self._last: tuple[torch.Tensor, Any] | None = None

    def for_documents(self, cu_seq_lens: torch.Tensor, *, length: int, device: torch.device) -> Any:
        if self._last is not None and self._last[0] is cu_seq_lens:
            return self._last[1]
        from torch.nn.attention.flex_attention import create_block_mask  # noqa: PLC0415

        cu = cu_seq_lens.to(device=device, dtype=torch.long)
        document = torch.repeat_interleave(torch.arange(cu.numel() - 1, device=device), cu.diff(), output_size=length)

        def same_document_causal(batch: Any, head: Any, q_index: Any, kv_index: Any) -> Any:
            return (document[q_index] == document[kv_index]) & (q_index >= kv_index)

        # Compiled on a GPU, the mask is built block by block; eager, it would materialise rows x rows first.
        mask = create_block_mask(
            same_document_causal, None, None, length, length, device=device, _compile=device.type == "cuda"
        )
        self._last = (cu_seq_lens, mask)
        return mask


_BLOCK_MASKS = _BlockMasks()


def flex_document_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seq_lens: torch.Tensor, *, scale: float
) -> torch.Tensor:
    """[1, heads, T, dim] in, [1, T, heads, dim] out, through the micro-batch's document BlockMask."""
    length = query.shape[2]
    block_mask = _BLOCK_MASKS.for_documents(cu_seq_lens, length=length, device=query.device)
    out: torch.Tensor = _compiled_flex()(
        query, key, value, block_mask=block_mask, scale=scale, enable_gqa=key.shape[1] != query.shape[1]
    )
    return out.transpose(1, 2).contiguous()


def per_example_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    lengths: list[int],
    *,
    scale: float,
    dropout: float = 0.0,
    softcap: float | None = None,
    window: int | None = None,
) -> torch.Tensor:
    """[1, heads, T, dim] in, [1, T, heads, dim] out: each example's own causal attention, one call each."""
    groups = query.shape[1] // key.shape[1]
    outputs = []
    pieces = (torch.split(tensor, lengths, dim=2) for tensor in (query, key, value))
    for q, k, v in zip(*pieces, strict=True):
        if softcap is not None or (window is not None and q.shape[2] > window):
            outputs.append(_eager_causal(q, k, v, groups=groups, scale=scale, softcap=softcap, window=window))
        else:
            outputs.append(
                functional.scaled_dot_product_attention(
                    q, k, v, is_causal=True, scale=scale, dropout_p=dropout, enable_gqa=groups > 1
                )
            )
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous()


def _eager_causal(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    groups: int,
    scale: float,
    softcap: float | None,
    window: int | None,
) -> torch.Tensor:
    """One example's causal attention in plain operations: logit soft-capping and sliding windows (Gemma 2/3)."""
    return _eager(q, k, v, _causal(q, window), groups=groups, scale=scale, softcap=softcap)


def _causal(q: torch.Tensor, window: int | None) -> torch.Tensor:
    """[T, T] bool: position i may attend to j <= i, within `window` positions when there is one."""
    index = torch.arange(q.shape[2], device=q.device)
    allowed = index[:, None] >= index[None, :]
    if window is not None:
        allowed &= (index[:, None] - index[None, :]) < window
    return allowed


def _eager(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    allowed: torch.Tensor,
    *,
    groups: int,
    scale: float,
    softcap: float | None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """softmax(softcap(q k^T scale) where `allowed`) v, [batch, heads, T, dim]; a row allowed nothing (a padding
    query) gets equal weights, not NaN."""
    k, v = _repeat_heads(k, groups, dim=1), _repeat_heads(v, groups, dim=1)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    if dropout > 0.0:
        weights = functional.dropout(weights, p=dropout)
    return torch.matmul(weights, v)


def padded_softcapped_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    scale: float,
    softcap: float,
    window: int | None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """[batch, heads, T, dim] in, [batch, T, heads, dim] out: rows of one sequence each (padded or not) with
    soft-capped logits, which sdpa cannot compute. `attention_mask` is transformers' boolean one (True: may
    attend; padding and, on sliding layers, the window in it); None: causal, within `window`."""
    groups = query.shape[1] // key.shape[1]
    if attention_mask is None:
        allowed = _causal(query, window)
    elif attention_mask.dtype == torch.bool:
        allowed = attention_mask
    else:
        allowed = attention_mask == 0  # an additive mask: 0 where allowed
    output = _eager(query, key, value, allowed, groups=groups, scale=scale, softcap=softcap, dropout=dropout)
    return output.transpose(1, 2).contiguous()


# --------------------------------------------------------------------------- the transformers implementation


def document_attention(kernel: AttentionKernel) -> Callable[..., tuple[torch.Tensor, None]]:
    """The attention function transformers calls in every layer, for `kernel`."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: PLC0415

    def attention(  # noqa: PLR0917 (transformers passes the first five positionally)
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        dropout: float = 0.0,
        scaling: float | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        cu_seq_lens = kwargs.get("cu_seq_lens_q")
        if cu_seq_lens is None and attention_mask is None and kwargs.get("position_ids") is not None:
            cu_seq_lens = documents_from_positions(kwargs["position_ids"])
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        window = getattr(module, "sliding_window", None)
        softcap = kwargs.get("softcap")
        if attention_mask is not None or cu_seq_lens is None or query.shape[0] != 1:
            # Padded rows (their mask) or rows of one sequence each: transformers' own sdpa, but for soft-capped
            # logits (Gemma 2), which sdpa would leave uncapped.
            if softcap is not None:
                output = padded_softcapped_attention(
                    query, key, value, attention_mask, scale=scale, softcap=softcap, window=window,
                    dropout=dropout if module.training else 0.0,
                )  # fmt: skip
                return output, None
            output, _ = sdpa_attention_forward(
                module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
            )
            return output, None
        exotic = softcap is not None or dropout > 0.0
        if kernel is AttentionKernel.VARLEN and not exotic:
            max_length = kwargs.get("max_length_q")
            if max_length is None:
                max_length = int(cu_seq_lens.diff().max())
            return varlen_attention(query, key, value, cu_seq_lens, int(max_length), scale=scale, window=window), None
        if kernel is AttentionKernel.FLEX and not exotic and window is None:
            return flex_document_attention(query, key, value, cu_seq_lens, scale=scale), None
        lengths = [int(n) for n in cu_seq_lens.diff().tolist()]
        output = per_example_attention(
            query, key, value, lengths, scale=scale, dropout=dropout, softcap=softcap, window=window
        )
        return output, None

    return attention


def _mask_for_padding_only(**kwargs: Any) -> Any:
    """The mask transformers builds before the layers: sdpa's for padded rows, none for packed ones."""
    from transformers.masking_utils import sdpa_mask  # noqa: PLC0415

    if kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(**kwargs)


def register_attention() -> None:
    """Register every kernel's implementation with transformers (idempotent)."""
    from transformers import AttentionInterface  # noqa: PLC0415
    from transformers.masking_utils import AttentionMaskInterface  # noqa: PLC0415

    for kernel in ORDER:
        name = implementation_name(kernel)
        AttentionInterface.register(name, document_attention(kernel))
        AttentionMaskInterface.register(name, _mask_for_padding_only)


def use_attention(model: nn.Module, kernel: AttentionKernel) -> None:
    """Make `model` (a transformers PreTrainedModel) attend through `kernel`."""
    register_attention()
    set_implementation = getattr(model, "set_attn_implementation", None)
    if set_implementation is None:
        raise RuntimeError(f"{type(model).__name__} is not a transformers model: its attention cannot be chosen")
    set_implementation(implementation_name(kernel))


# --------------------------------------------------------------------------- choosing a kernel


@dataclass(frozen=True)
class AttentionChoice:
    requested: AttentionKernel
    kernel: AttentionKernel
    passed_over: tuple[tuple[AttentionKernel, str], ...] = ()
    """Kernels tried before `kernel`, each with why it could not be used."""

    @property
    def fell_back(self) -> bool:
        """An explicit choice this device could not honour."""
        return self.requested is not AttentionKernel.AUTO and self.kernel is not self.requested

    def message(self) -> str:
        text = f"attention: {self.kernel.value}{' (per example)' if self.kernel is AttentionKernel.SDPA else ''}"
        text += f", template asked {self.requested.value}"
        if self.passed_over:
            text += "; " + "; ".join(f"{kernel.value}: {why}" for kernel, why in self.passed_over)
        return text


@dataclass(frozen=True)
class AttentionShape:
    """What the probe needs from the model: its heads and their size, and what its attention does."""

    heads: int
    kv_heads: int
    head_dim: int
    """The query's and key's head size."""
    sliding_window: bool = False
    softcap: bool = False
    value_head_dim: int | None = None
    """The values' head size where it is not `head_dim` (DeepSeek's compressed attention)."""

    @classmethod
    def of(cls, model: nn.Module) -> AttentionShape:
        config: Any = model.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = int(text.num_attention_heads)
        head_dim = query_head_dim(text.to_dict())  # DeepSeek's wider than its config.json `head_dim`
        value_head_dim = getattr(text, "v_head_dim", None)
        return cls(
            heads=heads,
            kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
            head_dim=int(head_dim),
            sliding_window=any(getattr(module, "sliding_window", None) for module in model.modules()),
            softcap=getattr(text, "attn_logit_softcapping", None) is not None,
            value_head_dim=int(value_head_dim) if value_head_dim and value_head_dim != head_dim else None,
        )


def choose_attention(
    requested: AttentionKernel,
    *,
    shape: AttentionShape,
    device: torch.device,
    dtype: torch.dtype,
    probe: Callable[[AttentionKernel], str | None] | None = None,
) -> AttentionChoice:
    """The kernel packed rows use: `requested`, or the first after it in ORDER this device runs."""
    start = 0 if requested is AttentionKernel.AUTO else ORDER.index(requested)
    run_probe = probe or (lambda kernel: probe_kernel(kernel, shape=shape, device=device, dtype=dtype))
    passed_over: list[tuple[AttentionKernel, str]] = []
    for kernel in ORDER[start:]:
        if kernel is AttentionKernel.SDPA:
            break
        reason = unavailable(kernel, shape=shape, device=device, dtype=dtype) or run_probe(kernel)
        if reason is None:
            return AttentionChoice(requested=requested, kernel=kernel, passed_over=tuple(passed_over))
        passed_over.append((kernel, reason))
    return AttentionChoice(requested=requested, kernel=AttentionKernel.SDPA, passed_over=tuple(passed_over))


def unavailable(
    kernel: AttentionKernel, *, shape: AttentionShape, device: torch.device, dtype: torch.dtype
) -> str | None:
    """Why `kernel` cannot run here, known without running it; None when it may."""
    if kernel is AttentionKernel.VARLEN:
        api = _varlen_api()
        if api is None:
            return f"torch {torch.__version__} has no torch.nn.attention.varlen"
        if device.type != "cuda":
            return "a CUDA kernel (this run is on the CPU)"
        if dtype not in (torch.bfloat16, torch.float16):
            return f"needs bf16 or fp16 activations, this run computes in {str(dtype).removeprefix('torch.')}"
        if shape.softcap:
            return "the model soft-caps attention logits, which the flash kernel cannot"
        if shape.sliding_window and not api.window:
            return "the model has sliding-window layers and this torch's varlen_attn no window_size"
        return None
    if kernel is AttentionKernel.FLEX:
        if importlib.util.find_spec("torch.nn.attention.flex_attention") is None:
            return f"torch {torch.__version__} has no flex_attention"
        if device.type != "cuda":
            return "torch has no flex_attention backward on a CPU"
        if shape.softcap or shape.sliding_window:
            return "the model soft-caps logits or has sliding-window layers (the per-example path handles them)"
        return None
    return None


def probe_kernel(
    kernel: AttentionKernel, *, shape: AttentionShape, device: torch.device, dtype: torch.dtype
) -> str | None:
    """Run `kernel` once on a small packed row, forward and backward, against per-example sdpa; None if it agrees."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    total = sum(PROBE_LENGTHS)

    def tensor(heads: int, size: int = shape.head_dim) -> torch.Tensor:
        data = torch.randn(1, heads, total, size, generator=generator)
        return data.to(device=device, dtype=dtype).requires_grad_()

    inputs = (
        tensor(shape.heads),
        tensor(shape.kv_heads),
        tensor(shape.kv_heads, shape.value_head_dim or shape.head_dim),
    )
    cu = cumulative_lengths(list(PROBE_LENGTHS)).to(device)
    scale = shape.head_dim**-0.5
    try:
        if kernel is AttentionKernel.VARLEN:
            out = varlen_attention(*inputs, cu, max(PROBE_LENGTHS), scale=scale, window=None)
        else:
            out = flex_document_attention(*inputs, cu, scale=scale)
        out.float().square().sum().backward()  # type: ignore[no-untyped-call]
        grads = [tensor.grad for tensor in inputs]
    except Exception as failed:  # any failure means: not on this device
        first_line = str(failed).strip().splitlines()[0][:200] if str(failed).strip() else ""
        return f"failed on this device ({type(failed).__name__}: {first_line})"
    q, k, v = (tensor.detach().clone().requires_grad_() for tensor in inputs)
    reference_inputs = [q, k, v]
    reference = per_example_attention(q, k, v, list(PROBE_LENGTHS), scale=scale)
    reference.float().square().sum().backward()  # type: ignore[no-untyped-call]
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    pairs = [(out, reference)] + [(g, r.grad) for g, r in zip(grads, reference_inputs, strict=True)]
    for got, want in pairs:
        if got is None or want is None:
            return "gave no gradient"
        error = float((got.detach().float() - want.detach().float()).abs().max())
        scale_of = max(1.0, float(want.detach().float().abs().max()))
        if not math.isfinite(error) or error > tolerance * scale_of:
            return f"differs from per-example attention by {error:.3g} on the probe row"
    return None
