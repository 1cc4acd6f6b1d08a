"""`kubetune`: the command line. Each subcommand lives in its own module and returns an exit code."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kubetune_operator.cli import check as check_model
from kubetune_operator.cli import crds, data, estimate, jobs, manifests, run, sandbox, templates
from kubetune_operator.cli import tiny as tiny_model

from .. import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubetune",
        description="Fine-tune LLMs on Kubernetes with FineTuneJob custom resources.",
    )
    parser.add_argument("--version", action="version", version=f"kubetune {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    crds.register(commands)
    templates.register(commands)
    manifests.register(commands)
    tiny_model.register(commands)
    check_model.register(commands)
    data.register(commands)
    estimate.register(commands)
    run.register(commands)
    sandbox.register(commands)
    jobs.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code
