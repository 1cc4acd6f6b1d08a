"""A sharded checkpoint that does not fit the run is refused whole, with a ValueError-class error naming what differs.

- written by another model: refused before any tensor is read (CheckpointInvalid,
  CheckpointDoesNotMatchModel), naming the tensors whose shapes differ; the model keeps its weights;
- a partial shard set (a marker that lacks a rank's RNG states or a shard file the DCP metadata
  maps): a named step is refused (CheckpointShardsMissing), and the newest-checkpoint search
  skips it for an older complete one;
- another world size with `reshardOnResume` off is refused (ResumeWorldSizeChanged); with it on
  (the default) the same checkpoint is accepted.

Checkpoints are written by the real `save_checkpoint` in one process (DCP without a process group).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from kubetune_trainer.context import DistInfo
from kubetune_trainer.errors import CheckpointInvalid
from kubetune_trainer.stages.train import _check_same_run
from kubetune_trainer.training.checkpoint import (
    STATE_FILE,
    CheckpointState,
    checkpoint_dir,
    save_checkpoint,
    write_complete_marker,
)
from kubetune_trainer.training.resume import find_checkpoint, load_weights, read_state

from .checkpoint_saver import model_at


def _save(root: Path, model: nn.Module, *, step: int) -> Path:
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    state = CheckpointState(step=step, epoch=0, step_in_epoch=step, total_steps=100, world_size=1, lora=False)
    saved = save_checkpoint(
        root, state=state, model=model, optimizer=optimizer, scheduler=scheduler, dist_info=DistInfo()
    )
    return saved.directory


def test_a_checkpoint_of_another_model_is_refused_before_loading(tmp_path: Path) -> None:
    directory = _save(tmp_path, model_at(3), step=3)
    other = nn.Sequential(nn.Linear(256, 128), nn.Linear(128, 64))
    before = [parameter.clone() for parameter in other.parameters()]

    with pytest.raises(CheckpointInvalid) as refused:
        load_weights(directory, model=other, state=read_state(directory), lora=False)

    assert isinstance(refused.value, CheckpointInvalid)
    assert refused.value.reason == "CheckpointDoesNotMatchModel"
    assert "0.weight: checkpoint [256, 256] vs model [128, 256]" in refused.value.message
    assert "1.weight: checkpoint [64, 256] vs model [64, 128]" in refused.value.message
    assert all(torch.equal(a, b) for a, b in zip(before, other.parameters(), strict=True))  # never loaded half


def test_a_checkpoint_with_missing_tensors_names_them(tmp_path: Path) -> None:
    directory = _save(tmp_path, nn.Sequential(nn.Linear(256, 256)), step=1)

    with pytest.raises(CheckpointInvalid, match=r"tensor\(s\) of this model missing \(1.bias, 1.weight\)"):
        load_weights(directory, model=model_at(0), state=read_state(directory), lora=False)


def test_the_same_model_loads_its_values(tmp_path: Path) -> None:
    directory = _save(tmp_path, model_at(5), step=5)
    model = model_at(0)
    load_weights(directory, model=model, state=read_state(directory), lora=False)
    assert all(torch.all(parameter == 5.0) for parameter in model.parameters())


def _claim_two_ranks(directory: Path) -> None:
    """Make the checkpoint say two ranks wrote it, and re-mark it: rank 1's files are then absent."""
    state = json.loads((directory / STATE_FILE).read_text())
    state["world_size"] = 2
    (directory / STATE_FILE).write_text(json.dumps(state))
    write_complete_marker(directory, step=state["step"])


def test_a_partial_shard_set_is_refused_by_name_and_skipped_when_searching(tmp_path: Path) -> None:
    _save(tmp_path, model_at(1), step=1)
    newest = _save(tmp_path, model_at(2), step=2)
    _claim_two_ranks(newest)

    with pytest.raises(CheckpointInvalid) as refused:
        find_checkpoint(tmp_path, step=2, reference="tiny:2")
    assert refused.value.reason == "CheckpointShardsMissing"
    assert "the 2 rank(s) that wrote it left no rng-1.pt" in refused.value.message

    assert find_checkpoint(tmp_path, step=None, reference="tiny") == checkpoint_dir(tmp_path, 1)


def test_a_shard_file_missing_from_a_remarked_checkpoint_is_refused(tmp_path: Path) -> None:
    directory = _save(tmp_path, model_at(4), step=4)
    (shard,) = (directory / "shards").glob("__0_*.distcp")
    shard.unlink()
    write_complete_marker(directory, step=4)  # a marker over what is left: hashes match, a shard does not exist

    with pytest.raises(CheckpointInvalid, match=f"left no shards/{shard.name}"):
        find_checkpoint(tmp_path, step=4, reference="tiny:4")


def test_another_world_size_is_refused_only_when_resharding_is_off(tmp_path: Path) -> None:
    state = CheckpointState(step=4, epoch=0, step_in_epoch=4, total_steps=8, world_size=4, lora=False)

    with pytest.raises(CheckpointInvalid) as refused:
        _check_same_run(state, world_size=2, total_steps=8, directory=tmp_path, reshard=False)
    assert refused.value.reason == "ResumeWorldSizeChanged"
    assert "written by 4 process(es), this run has 2" in refused.value.message

    _check_same_run(state, world_size=2, total_steps=8, directory=tmp_path, reshard=True)  # accepted
    with pytest.raises(CheckpointInvalid, match="run of 8 steps, this run has 9"):
        _check_same_run(state, world_size=2, total_steps=9, directory=tmp_path, reshard=True)
