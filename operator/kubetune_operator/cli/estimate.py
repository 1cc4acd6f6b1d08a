"""`kubetune estimate JOB.yaml [TEMPLATE.yaml...] --data FILE`: GPU-hours before launch.

The one FineTuneJob in the files is resolved as the operator resolves it (the shipped catalog, or
--templates DIR, plus any BaseModelTemplate in the files), its training file's tokens are counted,
and tokens x epochs are divided by the template's `spec.training.expectedTokensPerSecondPerGpu` x
the job's GPUs.

Tokens are counted with the model's own tokenizer when it is in the local Hugging Face cache
(`kubetune check ORG/NAME` or any earlier download puts it there; nothing is downloaded), over every
string of every record (message roles included, chat-template tokens not); else approximated as one
token per 4 characters. The output says which. The data file is the --data FILE given (JSONL or
Parquet), else the job's trainingFile when it is a local path. Nothing is created or changed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from kubetune_trainer.data.readers import Row, read_jsonl, read_parquet

from ..api.errors import InvalidResourceError, validate
from ..api.manifest_yaml import ManifestYamlError, read_documents
from ..api.resources import BaseModelTemplate, FineTuneJob
from ..resolve.catalog import Catalog, load_catalog
from ..resolve.estimate import CostEstimate, EstimateUnavailable, estimate_cost
from ..resolve.resolution import resolve_job
from ..settings import OperatorSettings
from .check import hub_cache_dir

EXIT_INVALID = 2
ANY_POD_ADDITION = OperatorSettings(
    pod_env_allowed=("*",), pod_volume_claims_allowed=("*",), pod_tolerations_allowed=True, pod_affinity_allowed=True
)
"""The installation's spec.pod allow-lists are not known here (the operator checks them) and cost nothing."""
CHARACTERS_PER_TOKEN = 4


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "estimate",
        help="estimate a job's GPU-hours from its data and its template, before launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="the FineTuneJob manifest, and any BaseModelTemplates"
    )
    parser.add_argument("--data", type=Path, metavar="FILE", help="training data (default: the job's trainingFile)")
    parser.add_argument("--templates", "--catalog", dest="templates", type=Path, metavar="DIR", help="template YAML")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return estimate(args, environ=os.environ, stream=sys.stdout, errors=sys.stderr)


def estimate(args: argparse.Namespace, *, environ: Mapping[str, str], stream: TextIO, errors: TextIO) -> int:
    shown = " ".join(str(f) for f in args.files)
    try:
        documents = [d for path in args.files for d in read_documents(path)]
        jobs = [validate(FineTuneJob, d, kind="FineTuneJob") for d in documents if _kind(d) == "FineTuneJob"]
        extra = [
            validate(BaseModelTemplate, d, kind="BaseModelTemplate")
            for d in documents
            if _kind(d) == "BaseModelTemplate"
        ]
        catalog = load_catalog(args.templates)
    except (ManifestYamlError, InvalidResourceError, OSError) as unreadable:
        print(f"{shown}: {unreadable}", file=errors)
        return EXIT_INVALID
    if len(jobs) != 1:
        print(f"{shown}: not a FineTuneJob manifest: it must hold one document of kind FineTuneJob", file=errors)
        return EXIT_INVALID
    (job,) = jobs
    templates = Catalog((*catalog.templates, *extra)).templates if extra else catalog.templates
    try:
        cost = estimate_for(job, templates=templates, data=args.data, environ=environ)
    except NoEstimate as refused:
        print(refused, file=errors)
        return EXIT_INVALID
    print_estimate(cost, name=job.metadata.name, output=args.output, stream=stream)
    return 0


class NoEstimate(ValueError):
    """No estimate can be made: the message names the job and what to do."""


def estimate_for(
    job: FineTuneJob, *, templates: Sequence[BaseModelTemplate], data: Path | None, environ: Mapping[str, str]
) -> CostEstimate:
    """`job`'s estimate against `templates`, counting the tokens of `data` (default: a local trainingFile)."""
    name = job.metadata.name
    resolution = resolve_job(
        job.spec, job_name=name, namespace=job.metadata.namespace or "default", templates=templates,
        settings=ANY_POD_ADDITION,
    )  # fmt: skip
    if resolution.job is None:
        lines = [f"job {name}: no estimate: {resolution.message}", *(f"  {line}" for line in resolution.field_errors)]
        raise NoEstimate("\n".join(lines))
    resolved = resolution.job
    data = data or _local_path(job.spec.training_file)
    if data is None:
        raise NoEstimate(
            f"job {name}: trainingFile {job.spec.training_file} is not a local file: give a local copy of the "
            "training data (kubetune estimate --data FILE, kubetune jobs create --estimate-data FILE)"
        )
    if not data.is_file():
        raise NoEstimate(f"job {name}: no such data file {data}: give the training data's local copy")
    tokenizer = _cached_tokenizer(resolved.model_repo, resolved.revision, cache_dir=hub_cache_dir(environ))
    try:
        tokens = count_tokens(data, tokenizer=tokenizer)
    except ValueError as unreadable:
        raise NoEstimate(f"job {name}: cannot read {data}: {unreadable}") from None
    basis = (
        f"tokenizer of {resolved.model_repo}@{resolved.revision} (local cache)"
        if tokenizer is not None
        else f"approximate: 1 token per {CHARACTERS_PER_TOKEN} characters (no tokenizer of {resolved.model_repo} "
        f"in the local Hugging Face cache; `kubetune check {resolved.model_repo}` downloads it)"
    )
    try:
        return estimate_cost(resolved, tokens=tokens, basis=basis)
    except EstimateUnavailable as missing:
        raise NoEstimate(f"job {name}: no estimate: {missing}") from None


def _kind(document: Any) -> Any:
    return document.get("kind") if isinstance(document, dict) else None


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    return None if "://" in uri else Path(uri)


def _cached_tokenizer(repo: str, revision: str, *, cache_dir: Path) -> Any | None:
    """The model's tokenizer from the local cache only; None when it is not there."""
    try:
        from transformers import AutoTokenizer  # noqa: PLC0415 - only estimate with a cached model needs it

        return AutoTokenizer.from_pretrained(repo, revision=revision, cache_dir=str(cache_dir), local_files_only=True)
    except Exception:  # not cached, or not loadable: the approximation says so
        return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def count_tokens(path: Path, *, tokenizer: Any | None) -> int:
    """Tokens of every string of every record; ValueError names the first unreadable line."""
    reader = read_parquet if path.suffix.lower() == ".parquet" else read_jsonl
    total = 0
    for row in reader(path):
        if not isinstance(row, Row):
            raise ValueError(f"line {row.line}: {row.message}" if row.line else row.message)
        for text in _strings(row.value):
            if tokenizer is not None:
                total += len(tokenizer(text, add_special_tokens=False)["input_ids"])
            else:
                total += math.ceil(len(text) / CHARACTERS_PER_TOKEN)
    return total


def print_estimate(cost: CostEstimate, *, name: str, output: str, stream: TextIO) -> None:
    if output == "json":
        print(json.dumps({"job": name, **cost.to_wire()}, indent=2), file=stream)
        return
    print(f"job {name} on template {cost.template}", file=stream)
    print(f"  tokens:     {cost.tokens} per epoch x {cost.epochs} epochs ({cost.basis})", file=stream)
    print(f"  throughput: {cost.tokens_per_second_per_gpu:g} tokens/s per GPU x {cost.gpus} GPUs", file=stream)
    print(f"  estimate:   {cost.gpu_hours:.3g} GPU-hours ({cost.hours:.3g} h on {cost.gpus} GPUs)", file=stream)
