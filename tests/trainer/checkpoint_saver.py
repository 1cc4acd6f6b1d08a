"""A process that does nothing but write checkpoints, killed with SIGKILL in the middle of one, on request.

    python -m tests.trainer.checkpoint_saver ROOT

Each line `kill SECONDS` on stdin forks a saver, waits for its first checkpoint, lets it go on
saving for SECONDS, kills it with SIGKILL and answers `killed`. The saver writes `step-<N+1>`,
`step-<N+2>`, ... into ROOT with the real `save_checkpoint`, N being the newest complete
checkpoint already there (a resumed run). This process only imports torch and forks (it never
computes, so the forked children start clean), so 20 kills cost one torch import, not 20.
Every tensor of step N's weights holds the value N: a reader can tell right data from a load.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import torch
from torch import nn

from kubetune_trainer.context import DistInfo
from kubetune_trainer.training.checkpoint import STEP_PREFIX, CheckpointState, save_checkpoint
from kubetune_trainer.training.resume import find_checkpoint


def model_at(step: int) -> nn.Module:
    model = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 64))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float(step))
    return model


def save_forever(root: Path, *, announce: int) -> None:
    """Save checkpoints back to back; write one byte to `announce` after the first."""
    found = find_checkpoint(root, step=None, reference="saver")
    step = int(found.name.removeprefix(STEP_PREFIX)) if found is not None else 0
    while True:
        step += 1
        model = model_at(step)
        optimizer = torch.optim.AdamW(model.parameters())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        state = CheckpointState(step=step, epoch=0, step_in_epoch=step, total_steps=10**6, world_size=1, lora=False)
        save_checkpoint(root, state=state, model=model, optimizer=optimizer, scheduler=scheduler, dist_info=DistInfo())
        if announce >= 0:
            os.write(announce, b"s")
            os.close(announce)
            announce = -1


def kill_one(root: Path, *, after_seconds: float) -> None:
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(readable)
        try:
            save_forever(root, announce=writable)
        finally:
            os._exit(1)
    os.close(writable)
    os.read(readable, 1)
    os.close(readable)
    time.sleep(after_seconds)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)


def main(root: Path) -> None:
    for line in sys.stdin:
        command, seconds = line.split()
        assert command == "kill", line
        kill_one(root, after_seconds=float(seconds))
        print("killed", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
