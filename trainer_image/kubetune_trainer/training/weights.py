"""The weights a snapshot ships, checked against its config.json before any of them is loaded.

transformers either refuses a tensor whose shape disagrees with the config (a RuntimeError after a
log table, indistinguishable from a failed computation) or, asked to ignore it, re-initialises the
tensor at random; missing tensors are filled with random values and only logged. Either way the
user's real problem is a checkpoint that does not match its config, a ValueError-class failure
with a hint, and it can be seen from the safetensors headers alone, before memory is spent.
A header that cannot be read (a truncated or non-safetensors file) raises `SafetensorError`,
classified as corrupt weights (RuntimeError class).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM

from ..errors import CheckpointInvalid

SHOWN = 5
"""Tensors named in a message; the rest are counted."""

SHARD_INDEX = "model.safetensors.index.json"


def shipped_shapes(snapshot: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, from the headers of every .safetensors file in `snapshot` (no tensor data read)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(snapshot.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as weights:
            for name in weights.keys():  # noqa: SIM118 - safe_open is not a mapping
                shapes[name] = tuple(weights.get_slice(name).get_shape())
    return shapes


def expected_shapes(snapshot: Path) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of the model config.json describes, built on the meta device (no memory)."""
    config = AutoConfig.from_pretrained(str(snapshot), trust_remote_code=False)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)  # type: ignore[no-untyped-call]
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def missing_shards(snapshot: Path) -> list[str]:
    """Shard files `model.safetensors.index.json` names that the snapshot lacks (an incomplete upload)."""
    index = snapshot / SHARD_INDEX
    if not index.is_file():
        return []
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return []  # transformers reports an unreadable index itself
    shards = {str(name) for name in weight_map.values()} if isinstance(weight_map, dict) else set()
    return sorted(name for name in shards if not (snapshot / name).is_file())


def check_weight_shapes(snapshot: Path) -> None:
    """Refuse a snapshot whose shards are incomplete or whose shapes disagree with its config.json.

    Both are CheckpointInvalid. A missing shard would otherwise surface as transformers'
    FileNotFoundError, which reads as an outage and is retried forever.
    """
    absent = missing_shards(snapshot)
    if absent:
        raise CheckpointInvalid(
            f"{snapshot.name}'s {SHARD_INDEX} names {len(absent)} weight file(s) it does not ship ({_some(absent)}).",
            reason="WeightShardsMissing",
            field="fromHfModel",
            hint="The model repo's upload is incomplete: upload the missing .safetensors shards, or point "
            "fromHfModel / hfModelRevision at a complete commit.",
        )
    mismatched = shape_mismatches(shipped_shapes(snapshot), expected_shapes(snapshot))
    if mismatched:
        raise weights_do_not_match(snapshot, mismatched=mismatched)


def shape_mismatches(shipped: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    """`name: checkpoint shape vs config shape` for every tensor both name with different shapes."""
    return [
        f"{name}: checkpoint {list(shape)} vs config {list(expected[name])}"
        for name, shape in sorted(shipped.items())
        if name in expected and expected[name] != shape
    ]


def weights_do_not_match(
    snapshot: Path, *, mismatched: Iterable[str] = (), missing: Iterable[str] = ()
) -> CheckpointInvalid:
    mismatched, missing = list(mismatched), sorted(missing)
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} tensor(s) of the wrong shape ({_some(mismatched)})")
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing ({_some(missing)})")
    return CheckpointInvalid(
        f"The weights in {snapshot.name} do not match its config.json: {'; '.join(problems)}.",
        reason="WeightsDoNotMatchConfig",
        field="fromHfModel",
        hint="Check the model is a CausalLM whose .safetensors files were saved from the config.json it ships "
        "(a complete upload of the same model), or point fromHfModel / hfModelRevision at one that is.",
    )


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown if len(items) <= SHOWN else f"{shown}, and {len(items) - SHOWN} more"
