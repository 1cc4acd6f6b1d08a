"""A model's size and reach from its config alone: parameters counted on the meta device, max positions.

The model is built with `with torch.device("meta")`: every tensor has a shape and no storage,
so a 405B config is counted in a fraction of a second with no memory. Not
`accelerate.init_empty_weights`: it patches only `nn.Module.register_parameter`, and MoE
models that create expert weights with `torch.empty` directly (DeepSeek-V3) then try a real
multi-GB allocation.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def count_parameters(config: PretrainedConfig) -> int:
    """Unique parameters of the causal LM this config describes (tied weights counted once)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)  # type: ignore[no-untyped-call]
    # parameters() yields a tied tensor once, as the hub's own counts do.
    return sum(p.numel() for p in model.parameters())


def max_positions(config: PretrainedConfig) -> int | None:
    """The longest sequence the model has positions for; the text model's for a multimodal config."""
    text = config.get_text_config()
    for key in _POSITION_KEYS:
        value = getattr(text, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
