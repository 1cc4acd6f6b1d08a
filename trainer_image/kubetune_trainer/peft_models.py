"""peft's two entry points, as the trainer calls them: without the FutureWarning peft 0.21 raises every time.

peft 0.21 (the newest) reads transformers' deprecated `is_gradient_checkpointing` alias of
`is_activation_checkpointing` in `PeftModel.__init__`, so every model it wraps (`get_peft_model`,
LoRA training and checkpoint export) or loads (`PeftModel.from_pretrained`: the adapter merge,
output verification of an adapter) puts a FutureWarning in the trainer's log that no user can act on.
On a mixture of experts (transformers 5's stacked experts) peft itself adds rank and alpha patterns for the
fused gate_up stack, which name a parameter, then checks them against module names and warns they matched
nothing, though they apply (the stack's adapter gets twice the rank at the same scaling: tested). Only those
messages, of those categories, are dropped, only around these calls; every other warning shows.
peft is imported when called: it takes seconds, and most jobs never need it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PEFT_DEPRECATION = r"`is_gradient_checkpointing` is deprecated"
"""The start of transformers' message for the alias peft reads (a regular expression, as `filterwarnings` takes)."""
PEFT_OWN_EXPERT_PATTERNS = (
    r"The following (rank|alpha)_pattern keys did not match any targeted module and were ignored: "
    r"\['\.\*\\+\.gate_up_proj'\]\.$"
)
"""peft's warning about its own gate_up_proj patterns on stacked experts, and nothing else it warns of patterns."""


@contextmanager
def peft_deprecation_silenced() -> Iterator[None]:
    """Within: transformers' `is_gradient_checkpointing` FutureWarning and peft's warnings of its own expert
    patterns are dropped, nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PEFT_DEPRECATION, category=FutureWarning)
        warnings.filterwarnings("ignore", message=PEFT_OWN_EXPERT_PATTERNS, category=RuntimeWarning)
        yield


def wrap_with_adapter(model: Any, peft_config: Any) -> Any:
    """`peft.get_peft_model(model, peft_config)`."""
    from peft import get_peft_model  # noqa: PLC0415

    with peft_deprecation_silenced():
        return get_peft_model(model, peft_config)


def load_adapter(base: Any, adapter: Path | str, **options: Any) -> Any:
    """`peft.PeftModel.from_pretrained(base, adapter, **options)`: the adapter folder on `base`."""
    from peft import PeftModel  # noqa: PLC0415

    with peft_deprecation_silenced():
        return PeftModel.from_pretrained(base, str(adapter), **options)
