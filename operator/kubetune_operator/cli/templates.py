"""`kubetune templates`: list the template catalog and recommend a template for a model."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from kubetune_trainer.contract import ModelFacts

from ..api.errors import InvalidResourceError
from ..api.manifest_yaml import ManifestYamlError
from ..resolve.catalog import Catalog, load_catalog
from ..resolve.gpu_plan import template_plans
from ..resolve.selection import human_count, recommend

_COUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMbBtT]?)\s*$")
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}


def parameter_count(text: str) -> int:
    """`135000000`, `135M`, `6.7B` -> a parameter count."""
    match = _COUNT.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a parameter count such as 135000000, 135M or 6.7B")
    return int(float(match.group(1)) * _SCALE[match.group(2).lower()])


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "templates", help="list templates, recommend one for a model", description=__doc__
    )
    parser.add_argument("--catalog", type=Path, help="directory of BaseModelTemplate YAML (default: the packaged one)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="show every template")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=run_list)

    advice = actions.add_parser("recommend", help="choose a template for a model's facts")
    advice.add_argument("--model-type", required=True, help="config.json model_type, e.g. llama")
    advice.add_argument("--parameters", required=True, type=parameter_count, help="e.g. 135000000 or 135M")
    advice.add_argument("--max-positions", type=int, help="config.json max_position_embeddings")
    advice.add_argument(
        "--architecture", action="append", default=[], help="config.json architectures entry (repeatable)"
    )
    advice.add_argument("--json", action="store_true", help="print JSON with template, reasons and warnings")
    advice.set_defaults(run=run_recommend)


def _catalog(args: argparse.Namespace) -> Catalog | None:
    try:
        return load_catalog(args.catalog)
    except (InvalidResourceError, ManifestYamlError) as invalid:
        print(invalid, file=sys.stderr)
        return None
    except OSError as error:
        print(f"cannot read the template catalog {args.catalog}: {error.strerror}", file=sys.stderr)
        return None


def run_list(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    if catalog is None:
        return 2
    if args.json:
        print(json.dumps([t.to_wire() for t in catalog], indent=2))
        return 0
    rows = [("NAME", "ALIASES", "FAMILY", "PARAMS", "MAX-SEQ", "NODES x GPUS", "GPU")]
    for t in catalog:
        res = t.spec.resources
        rows.append(
            (
                t.name,
                ",".join(t.spec.aliases) or "-",
                t.spec.architecture.family,
                human_count(t.spec.parameters),
                str(t.spec.max_seq_length),
                f"{res.nodes} x {res.gpus_per_node}",
                res.gpu_product or "any",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def run_recommend(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    if catalog is None:
        return 2
    facts = ModelFacts(
        model_type=args.model_type,
        architectures=args.architecture,
        parameters=args.parameters,
        max_positions=args.max_positions,
    )
    advice = recommend(facts, catalog.templates)
    if args.json:
        print(json.dumps(advice.to_wire(), indent=2))
        return 0
    template = catalog.find(advice.template)
    aliases = f" ({', '.join(template.spec.aliases)})" if template and template.spec.aliases else ""
    print(f"template: {advice.template}{aliases}")
    for reason in advice.reasons:
        print(f"  because {reason}")
    for warning in advice.warnings:
        print(f"  warning {warning.reason}: {warning.message}")
    if template is not None:
        for how, plan in template_plans(template.spec, parameters=facts.parameters, max_positions=facts.max_positions):
            print(f"gpus ({how}): {plan.describe()}")
    return 0
