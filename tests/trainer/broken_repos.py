"""Tiny model repos broken the ways real uploads break, published into a writable HF cache."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kubetune_trainer.hf_cache import publish_folder
from kubetune_trainer.tiny_model import TinyModel

WEIGHTS = "model.safetensors"


def publish_broken(
    tiny: TinyModel, *, repo_id: str, hf_home: Path, workdir: Path, damage: Callable[[Path], None]
) -> str:
    """Copy `tiny`'s snapshot, `damage` the copy, publish it as `repo_id` in `hf_home`; returns the repo id."""
    folder = workdir / repo_id.replace("/", "--")
    shutil.copytree(tiny.snapshot_path, folder)
    damage(folder)
    publish_folder(folder, repo_id=repo_id, hub_cache=hf_home / "hub")
    return repo_id


def _rewrite_weights(folder: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    weights = load_file(str(folder / WEIGHTS))
    (folder / WEIGHTS).unlink()  # a hub snapshot file is a symlink into blobs: never write through it
    change(weights)
    save_file(weights, str(folder / WEIGHTS), metadata={"format": "pt"})


def config_disagrees_with_weights(folder: Path) -> None:
    """config.json says a wider MLP than the tensors have (an upload mixing two model sizes)."""
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config_path.unlink()
    config["intermediate_size"] = config["intermediate_size"] * 2
    config_path.write_text(json.dumps(config), encoding="utf-8")


def a_layer_is_missing(folder: Path) -> None:
    """A tensor the config needs is absent (transformers would fill it with random values)."""

    def drop(weights: dict[str, torch.Tensor]) -> None:
        del weights["model.layers.1.mlp.down_proj.weight"]

    _rewrite_weights(folder, drop)


def truncated(folder: Path) -> None:
    """Half the file, as an interrupted upload leaves it."""
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).unlink()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])


def an_infinite_weight(folder: Path) -> None:
    """One weight is inf: it loads, and every loss is NaN (what a diverged checkpoint looks like)."""

    def poison(weights: dict[str, torch.Tensor]) -> None:
        weights["model.layers.0.mlp.down_proj.weight"][0, 0] = torch.inf

    _rewrite_weights(folder, poison)
