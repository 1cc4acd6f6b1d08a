"""SIGKILL in the middle of a checkpoint save leaves nothing the loader would take for a checkpoint.

A forked process writes checkpoints back to back with the real `save_checkpoint`, resuming after
the newest complete one; it is killed with SIGKILL at a random moment (seeded, the seed printed),
20 times, each time into the directory the previous kills left. After every kill the loader must
pick a complete checkpoint whose files load and hold that step's values, or none: 0 corrupt
loads. A directory damaged after its COMPLETE marker was written (a truncated weights file) is
skipped for the next older one.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import torch

from kubetune_trainer.training.checkpoint import checkpoint_dir
from kubetune_trainer.training.resume import find_checkpoint, load_weights, read_state

from .checkpoint_saver import model_at

KILLS = 20
SEED = int(os.environ.get("KUBETUNE_KILL_SEED", "20261122"))


class Saver:
    """`tests.trainer.checkpoint_saver` in a subprocess: `kill(seconds)` kills one of its savers mid-save."""

    def __init__(self, root: Path) -> None:
        environ = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.trainer.checkpoint_saver", str(root)],
            env=environ,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )

    def kill(self, seconds: float) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"kill {seconds}\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline() == "killed\n"

    def close(self) -> None:
        self.process.communicate(timeout=30)
        assert self.process.returncode == 0


def _assert_loads_intact(root: Path) -> int | None:
    found = find_checkpoint(root, step=None, reference="test")
    if found is None:
        return None
    state = read_state(found)
    model = model_at(0)
    load_weights(found, model=model, state=state, lora=False)
    assert all(torch.all(parameter == float(state.step)) for parameter in model.parameters()), found
    torch.load(found / "scheduler.pt", weights_only=True)
    torch.load(found / "rng-0.pt", weights_only=True)
    return state.step


def test_twenty_kills_during_saves_give_no_corrupt_load(tmp_path: Path) -> None:
    print(f"kill seed {SEED} (set KUBETUNE_KILL_SEED to replay)")
    chance = random.Random(SEED)
    root = tmp_path / "checkpoints"
    newest: int | None = None
    mid_save = 0
    saver = Saver(root)
    for kill in range(KILLS):
        saver.kill(chance.uniform(0.0, 0.05))
        mid_save += any(p.name.startswith(".") for p in root.iterdir())
        loaded = _assert_loads_intact(root)
        assert loaded is not None, f"kill {kill}: a save had completed, yet nothing loads"
        assert newest is None or loaded >= newest, f"kill {kill}: step {loaded} after {newest}"
        newest = loaded
    saver.close()
    print(f"newest complete step {newest}; {mid_save} of {KILLS} kills left a half-written checkpoint")
    assert mid_save > 0  # the kills did land inside saves


def test_a_checkpoint_damaged_after_its_marker_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    saver = Saver(root)
    saver.kill(0.0)
    saver.kill(0.0)
    saver.close()
    newest = max(int(p.name.removeprefix("step-")) for p in root.glob("step-*") if (p / "COMPLETE").exists())
    (weights,) = (checkpoint_dir(root, newest) / "shards").glob("__0_*.distcp")
    weights.write_bytes(weights.read_bytes()[:100])  # truncated after its marker was written

    assert _assert_loads_intact(root) == newest - 1
