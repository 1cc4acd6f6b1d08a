"""`kubetune tiny-model`: write a tiny random model and a trained tokenizer into a local HF cache.

For smoke-testing an install and running the demo with no download: afterwards
`HF_HOME=DIR HF_HUB_OFFLINE=1` makes ORG/NAME load like any hub model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "tiny-model", help="write a tiny random model into a local HF cache", description=__doc__
    )
    parser.add_argument("--arch", required=True, choices=("llama", "qwen2", "mistral"), help="model architecture")
    parser.add_argument("--repo-id", required=True, help="repo id to publish under, ORG/NAME")
    parser.add_argument("--hf-home", required=True, type=Path, help="HF_HOME directory; the cache is DIR/hub")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights (default 0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        # The trainer's ML stack is imported only here: the operator image has no torch.
        from transformers.utils import logging as transformers_logging  # noqa: PLC0415

        from kubetune_trainer.tiny_model import write_tiny_model  # noqa: PLC0415
    except ImportError as missing:
        print(
            f"kubetune tiny-model needs the trainer extra (pip install 'kubetune[trainer]'): {missing}", file=sys.stderr
        )
        return 2
    # The command prints what it wrote; a library progress bar for one tiny shard is noise.
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        model = write_tiny_model(arch=args.arch, repo_id=args.repo_id, hf_home=args.hf_home, seed=args.seed)
    except ValueError as invalid:
        print(f"kubetune tiny-model: {invalid}", file=sys.stderr)
        return 2
    print(f"repo:     {model.repo_id}")
    print(f"revision: {model.revision_sha}")
    print(f"path:     {model.snapshot_path}")
    print(f"use it:   HF_HOME={args.hf_home} HF_HUB_OFFLINE=1 (model {model.repo_id})")
    return 0
