"""`kubetune check ORG/NAME`: will kubetune fine-tune this model, and on which template?

Reads config.json and the file list (from the hub, or from the local cache when
HF_HUB_OFFLINE=1), never the weights. Prints each rule PASS or FAIL with its message, the
parameter count, the max positions and the recommended template with its reasons (or, with
--template, the differences from that template). Exit 0 when every rule passes, 1 when any
fails, 2 when the model could not be checked (hub unreachable, bad catalog).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune_trainer.compat import human_count
from kubetune_trainer.memory_model import ModelShape

from ..api.errors import InvalidResourceError
from ..api.manifest_yaml import ManifestYamlError
from ..api.resources import BaseModelTemplate
from ..resolve.catalog import Catalog, load_catalog
from ..resolve.gpu_plan import template_plans
from ..resolve.selection import expectations_of, recommend

if TYPE_CHECKING:
    from kubetune_trainer.contract import ModelShapeFacts, TemplateExpectations
    from kubetune_trainer.model_source import ModelInspection

TOKEN_ENV = "HF_TOKEN"


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "check", help="check a Hugging Face model against kubetune's rules", description=__doc__
    )
    parser.add_argument("repo", metavar="ORG/NAME", help="model or LoRA adapter repo, as fromHfModel")
    parser.add_argument("--revision", default="main", help="branch, tag or commit (default main)")
    parser.add_argument("--template", help="check against this BaseModelTemplate (name or alias) instead of choosing")
    parser.add_argument("--hf-home", type=Path, help="HF_HOME whose hub cache to use (default: the environment's)")
    parser.add_argument("--catalog", type=Path, help="directory of BaseModelTemplate YAML (default: the packaged one)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    if args.hf_home is not None:
        environ["HF_HOME"] = str(args.hf_home)
    return check(args, environ=environ)


def hub_cache_dir(environ: Mapping[str, str]) -> Path:
    """Where huggingface_hub keeps repos: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"])
    home = environ.get("HF_HOME") or str(Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface")
    return Path(home) / "hub"


def check(args: argparse.Namespace, *, environ: Mapping[str, str]) -> int:
    try:
        # The trainer's ML stack is imported only here: the operator image has no torch.
        from kubetune_trainer.errors import InvalidInput, TrainerError  # noqa: PLC0415
        from kubetune_trainer.model_source import inspect_repo  # noqa: PLC0415
    except ImportError as missing:
        print(f"kubetune check needs the trainer extra (pip install 'kubetune[trainer]'): {missing}", file=sys.stderr)
        return 2
    catalog = _catalog(args.catalog)
    if catalog is None:
        return 2
    named = None
    if args.template:
        named = catalog.find(args.template)
        if named is None:
            print(f"no template {args.template!r}; `kubetune templates list` shows them", file=sys.stderr)
            return 2
    token_env = TOKEN_ENV if environ.get(TOKEN_ENV) else None
    print(f"model {args.repo}@{args.revision}")

    def inspect(template: TemplateExpectations | None) -> ModelInspection:
        return inspect_repo(
            args.repo,
            revision=args.revision,
            token_env=token_env,
            template=template,
            cache_dir=hub_cache_dir(environ),
            environ=environ,
        )

    try:
        inspection = inspect(expectations_of(named) if named else None)
        facts = inspection.check.facts
        if named is None and facts is not None:
            chosen = catalog.find(recommend(facts, catalog.templates).template)
            inspection = inspect(expectations_of(chosen) if chosen else None)
    except TrainerError as error:
        print(f"  FAIL  {'repo':<20} {error.message}")
        print(f"        {'':<20} {error.reason}: {error.hint}")
        return 1 if isinstance(error, InvalidInput) else 2
    _print_inspection(inspection)
    _print_template(inspection, catalog=catalog, named=named)
    failed = [o for o in inspection.check.outcomes if o.failed]
    print(f"result: {len(failed)} rule(s) failed" if failed else "result: every rule passed")
    return 1 if failed else 0


def _print_inspection(inspection: ModelInspection) -> None:
    print(f"  commit {inspection.listing.sha}")
    if inspection.base is not None:
        print(f"  LoRA adapter of {inspection.base.repo}@{inspection.base.sha} (merged before training)")
    for outcome in inspection.check.outcomes:
        print(f"  {outcome.status.value:<5} {outcome.rule:<20} {outcome.message}")
        if outcome.failed:
            print(f"        {'':<20} {outcome.reason}: {outcome.hint}")
    facts = inspection.check.facts
    if facts is not None:
        print(f"parameters: {human_count(facts.parameters)} ({facts.parameters:,})")
        print(f"max positions: {facts.max_positions if facts.max_positions is not None else 'unknown'}")
        if facts.shape is not None:
            print(f"shape: {_shape_line(facts.shape, facts.parameters)}")


def _shape_line(shape: ModelShapeFacts, parameters: int) -> str:
    """What the GPU plan sizes with, as a line: layers, widths, heads, vocabulary and, for a mixture of experts, the
    experts, the parameters a token computes with and the layers whose MLP is dense."""
    line = (
        f"{shape.num_layers} layers of {shape.hidden_size} (MLP {shape.intermediate_size}), {shape.num_heads} heads "
        f"of {shape.head_dim} ({shape.num_kv_heads} key/value), vocabulary {shape.vocab_size:,}"
    )
    if shape.num_experts:
        active = ModelShape.from_facts(shape, parameters=parameters).active_parameters
        line += f", {shape.num_experts} experts, {shape.active_experts} a token ({human_count(active)} active)"
        if shape.dense_layers:
            line += f"; {shape.dense_layers} of the layers dense (MLP {shape.dense_intermediate_size})"
    return line


def _print_template(inspection: ModelInspection, *, catalog: Catalog, named: BaseModelTemplate | None) -> None:
    facts = inspection.check.facts
    if facts is None:
        return
    warnings = list(inspection.check.warnings)
    template = named
    if named is not None:
        print(f"template: {named.name}")
    else:
        advice = recommend(facts, catalog.templates)
        template = catalog.find(advice.template)
        aliases = f" ({', '.join(template.spec.aliases)})" if template and template.spec.aliases else ""
        print(f"recommended template: {advice.template}{aliases}")
        for reason in advice.reasons:
            print(f"  because {reason}")
        warnings = [*advice.warnings, *warnings]
    if template is not None and template.spec.resources.gpus_per_node > 0:
        plans = template_plans(
            template.spec, parameters=facts.parameters, max_positions=facts.max_positions, shape=facts.shape
        )
        for how, plan in plans:
            print(f"gpus ({how}): {plan.describe()}")
    seen: set[str] = set()
    for warning in warnings:
        if warning.reason not in seen:
            seen.add(warning.reason)
            print(f"  warning {warning.reason}: {warning.message}")


def _catalog(directory: Path | None) -> Catalog | None:
    try:
        return load_catalog(directory)
    except (InvalidResourceError, ManifestYamlError) as invalid:
        print(invalid, file=sys.stderr)
    except OSError as error:
        print(f"cannot read the template catalog {directory}: {error.strerror}", file=sys.stderr)
    return None
