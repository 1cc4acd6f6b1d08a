"""One seed for everything random in a run: python, numpy (when present) and torch."""

from __future__ import annotations

import random

import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy  # noqa: PLC0415 (optional: neither torch nor the data code needs it)
    except ImportError:
        return
    numpy.random.seed(seed % 2**32)
