"""`kubetune jobs`: Together's fine-tuning verbs on the command line, printed the way kubectl prints.

    kubetune jobs create -f job.yaml | --model M --training-file URI [--n-epochs N ...]
                         [--estimate [--estimate-data FILE]] [--dry-run]
    kubetune jobs list [-o wide|json|yaml|name] [-w] [-l SELECTOR]
    kubetune jobs get NAME [-o ...] [-w]
    kubetune jobs events NAME [-o json|yaml]
    kubetune jobs logs NAME [--tail N]
    kubetune jobs cancel NAME
    kubetune jobs checkpoints NAME [-o json|yaml]
    kubetune jobs download NAME [--checkpoint-step N] [--checkpoint-type merged|adapter] [--output DIR]
    kubetune jobs serve NAME [--dry-run] [--kind kserve|vllm] [--owned|--no-owned] [--name N] [--gpus G]
    kubetune jobs delete NAME

Every command takes -n/--namespace, --kubeconfig and --context as kubectl does. A refused request
(cancel of a finished job, a step that does not exist) prints what to do and exits 1, changing nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..api.errors import InvalidResourceError
from ..api.status import TERMINAL_PHASES

if TYPE_CHECKING:
    from ..client import FinetuneResponse, FineTuning

Json = dict[str, Any]
COLUMNS = ("NAME", "PHASE", "STAGE", "PROGRESS", "MODEL", "ERROR", "AGE")
WIDE_COLUMNS = (*COLUMNS, "STATUS", "HF-MODEL", "REASON", "ATTEMPT")
_CREATE_FLAGS: tuple[tuple[str, Any, str], ...] = (
    ("model", str, "template name or alias, or auto (with --from-hf-model)"),
    ("training-file", str, "training data URI: pvc://claim/path, s3://, https://, hf://datasets/..."),
    ("validation-file", str, "validation data URI"),
    ("from-hf-model", str, "Hugging Face repo to train"),
    ("hf-model-revision", str, "commit, branch or tag"),
    ("n-epochs", int, "passes over the training file"),
    ("n-checkpoints", int, "checkpoints written over training"),
    ("n-evals", int, "evaluations over training"),
    ("batch-size", str, "an integer or max"),
    ("learning-rate", float, "peak learning rate"),
    ("lr-scheduler-type", str, "linear, cosine or constant"),
    ("min-lr-ratio", float, "final learning rate as a fraction of the peak"),
    ("warmup-ratio", float, "fraction of steps warming up"),
    ("max-grad-norm", float, "gradient clipping norm (0: off)"),
    ("weight-decay", float, "AdamW weight decay"),
    ("lora-r", int, "LoRA rank"),
    ("lora-alpha", int, "LoRA alpha"),
    ("lora-dropout", float, "LoRA dropout"),
    ("lora-trainable-modules", str, "modules to adapt, comma-separated, or all-linear"),
    ("suffix", str, "appended to the output model name"),
    ("from-checkpoint", str, "<job> or <job>:<step> to continue from"),
    ("output-uri", str, "where the trained model goes"),
    ("checkpoint-uri", str, "where checkpoints go"),
    ("max-seq-length", int, "longest sequence trained"),
    ("seed", int, "random seed"),
    ("max-retries", int, "retries of retryable failures"),
    ("queue-name", str, "Kueue LocalQueue"),
)


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "jobs",
        help="create, list, follow, cancel and download FineTuneJobs (Together's verbs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, run: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        sub.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
        sub.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
        sub.add_argument("--context", help="kubeconfig context")
        sub.set_defaults(run=lambda args: _guarded(run, args))
        return sub

    create = action("create", run_create, "create a FineTuneJob from a manifest or from Together's flags")
    create.add_argument("-f", "--filename", type=Path, help="a FineTuneJob manifest (YAML or JSON)")
    create.add_argument("--name", help="job name (default: ft- and 10 hex digits)")
    for flag, kind, help_text in _CREATE_FLAGS:
        create.add_argument(f"--{flag}", type=kind, help=help_text)
    create.add_argument("--lora", action=argparse.BooleanOptionalAction, default=None, help="train a LoRA adapter")
    create.add_argument("--lora-merge", action=argparse.BooleanOptionalAction, default=None, help="also merge it")
    create.add_argument("--train-on-inputs", choices=["true", "false", "auto"], help="prompt tokens in the loss")
    create.add_argument("--packing", action=argparse.BooleanOptionalAction, default=None, help="pack examples")
    create.add_argument("-o", "--output", choices=["name", "json", "yaml"], help="print the created job")
    create.add_argument(
        "--estimate",
        action="store_true",
        help="print the job's GPU-hour estimate (its template's tokens/s per GPU, the data's tokens) before creating; "
        "no estimate, no job",
    )
    create.add_argument(
        "--estimate-data",
        type=Path,
        metavar="FILE",
        help="a local copy of the training data to count (default: the trainingFile, when it is a local path)",
    )
    create.add_argument(
        "--dry-run",
        action="store_true",
        help="create nothing: print the job (-o yaml by default) and, with --estimate, its estimate",
    )

    listing = action("list", run_list, "list jobs as a table")
    _output_flag(listing, table=True)
    listing.add_argument("-w", "--watch", action="store_true", help="after listing, print each change")
    listing.add_argument("-l", "--selector", help="label selector")

    get = action("get", run_get, "show one job")
    get.add_argument("name")
    _output_flag(get, table=True)
    get.add_argument("-w", "--watch", action="store_true", help="print each change until the job finishes")

    events = action("events", run_events, "the job's Events, oldest first")
    events.add_argument("name")
    _output_flag(events, table=False)

    logs = action("logs", run_logs, "rank 0's log of the newest attempt")
    logs.add_argument("name")
    logs.add_argument("--tail", type=int, help="last N lines")

    cancel = action("cancel", run_cancel, "cancel a job: pods removed, record and checkpoints kept")
    cancel.add_argument("name")

    checkpoints = action("checkpoints", run_checkpoints, "the job's checkpoints and final model, newest first")
    checkpoints.add_argument("name")
    _output_flag(checkpoints, table=False)

    download = action("download", run_download, "copy the trained model or a checkpoint into a folder")
    download.add_argument("name", help="NAME or NAME:STEP")
    download.add_argument("--checkpoint-step", type=int, help="a checkpoint step (default: the final model)")
    download.add_argument("--checkpoint-type", choices=["default", "merged", "adapter"], default="default")
    download.add_argument("--output", type=Path, help="folder to write (default: ./NAME)")
    download.add_argument("--pvc-root", type=Path, help="where pvc:// claims are mounted here (one folder per claim)")

    _serve_flags(action("serve", run_serve, "serve a Succeeded job's model: a KServe InferenceService or vLLM"))

    delete = action("delete", run_delete, "delete a job, its pods and its Secrets")
    delete.add_argument("name")


def _serve_flags(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("name")
    serve.add_argument("--dry-run", action="store_true", help="print the manifests (YAML) and create nothing")
    serve.add_argument("--kind", choices=["kserve", "vllm"], help="what to create (default: spec.serve.kind)")
    serve.add_argument(
        "--owned", action=argparse.BooleanOptionalAction, default=None, help="deleted with the job (default: true)"
    )
    serve.add_argument("--name", dest="serve_name", help="name of the serving objects (default: the job's)")
    serve.add_argument("--gpus", type=int, help="GPUs of the server (default: sized from the job's record)")


def _output_flag(parser: argparse.ArgumentParser, *, table: bool) -> None:
    choices = ["wide", "json", "yaml", "name"] if table else ["json", "yaml"]
    parser.add_argument("-o", "--output", choices=choices, help="output format (default: a table)")


def _guarded(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        from ..client import JobRequestError, NoCluster, UnsupportedArgument  # noqa: PLC0415 - the client extra
    except ImportError as missing:
        print(
            f"kubetune jobs needs the client extra ({missing.name} is missing): pip install 'kubetune[client]'",
            file=sys.stderr,
        )
        return 2
    try:
        return run(args)
    except (JobRequestError, NoCluster, UnsupportedArgument, InvalidResourceError) as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _jobs(args: argparse.Namespace) -> FineTuning:
    from ..client import Kubetune  # noqa: PLC0415

    client = Kubetune(
        namespace=args.namespace,
        kubeconfig=args.kubeconfig,
        context=args.context,
        pvc_root=getattr(args, "pvc_root", None),
    )
    return client.fine_tuning


def run_create(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    flags = {key.replace("-", "_"): getattr(args, key.replace("-", "_")) for key, _, _ in _CREATE_FLAGS}
    flags.update(lora=args.lora, lora_merge=args.lora_merge, packing=args.packing)
    if args.train_on_inputs is not None:
        flags["train_on_inputs"] = "auto" if args.train_on_inputs == "auto" else args.train_on_inputs == "true"
    if flags["batch_size"] is not None and flags["batch_size"] != "max":
        flags["batch_size"] = _integer("--batch-size", flags["batch_size"])
    if flags["lora_trainable_modules"] is not None:
        flags["lora_trainable_modules"] = [m.strip() for m in flags["lora_trainable_modules"].split(",") if m.strip()]
    given = {key: value for key, value in flags.items() if value is not None}
    if args.filename is not None:
        if given:
            print(
                f"error: -f {args.filename} and flags ({', '.join(sorted(given))}) both describe the job: give one",
                file=sys.stderr,
            )
            return 1
        manifest = _read_manifest(args.filename)
    elif "training_file" not in given or "model" not in given:
        print("error: create needs -f FILE, or --model and --training-file", file=sys.stderr)
        return 1
    else:
        manifest = jobs.manifest_for(name=args.name, **given)
    if args.estimate and (refused := _estimate(jobs, manifest, name=args.name, data=args.estimate_data)):
        print(f"error: {refused}; nothing was created", file=sys.stderr)
        return 1
    if args.dry_run:
        _dump(manifest, args.output if args.output in ("json", "yaml") else "yaml")
        return 0
    if args.filename is not None:
        job = _create_from_manifest(jobs, manifest, name=args.name)
    else:
        job = jobs.create(name=manifest["metadata"]["name"], **given)
    _print_objects([job.raw], output=args.output or "name")
    return 0


def _estimate(jobs: FineTuning, manifest: Json, *, name: str | None, data: Path | None) -> str | None:
    """Print the job's estimate against the cluster's templates; why there is none, if there is none."""
    from ..api.errors import validate  # noqa: PLC0415
    from ..api.resources import BaseModelTemplate, FineTuneJob  # noqa: PLC0415
    from .estimate import NoEstimate, estimate_for, print_estimate  # noqa: PLC0415

    metadata = {**(manifest.get("metadata") or {}), "namespace": jobs.namespace}
    metadata["name"] = name or metadata.get("name") or "the-new-job"
    job = validate(FineTuneJob, {**manifest, "metadata": metadata}, kind="FineTuneJob")
    templates = []
    for raw in jobs.templates():
        with contextlib.suppress(ValueError):  # an invalid template is ignored, as the operator ignores it
            templates.append(BaseModelTemplate.parse({k: v for k, v in raw.items() if k != "status"}))
    try:
        cost = estimate_for(job, templates=templates, data=data, environ=os.environ)
    except NoEstimate as refused:
        return str(refused)
    print_estimate(cost, name=job.metadata.name, output="text", stream=sys.stdout)
    return None


def _read_manifest(path: Path) -> Json:
    try:
        manifest: Json = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as unreadable:
        from ..client import JobRequestError  # noqa: PLC0415

        raise JobRequestError(f"cannot read {path}: {unreadable}") from None
    return manifest


def _create_from_manifest(jobs: FineTuning, manifest: Json, *, name: str | None) -> FinetuneResponse:
    from ..client.views import job_response  # noqa: PLC0415

    return job_response(jobs.create_manifest(manifest, name=name))


def _integer(flag: str, text: str) -> int:
    from ..client import UnsupportedArgument  # noqa: PLC0415

    try:
        return int(text)
    except ValueError:
        raise UnsupportedArgument(f"{flag} {text!r}: give a positive integer or max") from None


def run_list(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    listed = jobs.list(label_selector=args.selector)
    _print_objects([job.raw for job in listed.data], output=args.output, as_list=True)
    if args.watch:
        for job in jobs.watch():
            _print_objects([job.raw], output=args.output, header=False)
    return 0


def run_get(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    job = jobs.retrieve(args.name)
    _print_objects([job.raw], output=args.output)
    if args.watch and job.phase not in TERMINAL_PHASES:
        last = _row(job.raw, wide=args.output == "wide")
        for seen in jobs.watch(args.name):
            row = _row(seen.raw, wide=args.output == "wide")
            if row[:-1] != last[:-1] or args.output in ("json", "yaml"):
                _print_objects([seen.raw], output=args.output, header=False)
                last = row
            if seen.phase in TERMINAL_PHASES:
                break
    return 0


def run_events(args: argparse.Namespace) -> int:
    events = _jobs(args).list_events(args.name).data
    if args.output:
        _dump([e.model_dump(mode="json") for e in events], args.output)
        return 0
    rows = [(e.created_at or "", e.level or "", e.type or "", str(e.count), e.message or "") for e in events]
    _table(("TIME", "TYPE", "REASON", "COUNT", "MESSAGE"), rows)
    return 0


def run_logs(args: argparse.Namespace) -> int:
    sys.stdout.write(_jobs(args).logs(args.name, tail_lines=args.tail))
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    job = _jobs(args).cancel(args.name)
    print(f"finetunejob.kubetune.dev/{job.id} cancel requested ({job.status})")
    return 0


def run_checkpoints(args: argparse.Namespace) -> int:
    found = _jobs(args).list_checkpoints(args.name)
    if args.output:
        _dump([c.model_dump(mode="json") for c in found], args.output)
        return 0
    if not found:
        print(f"No checkpoints of {args.name} yet.", file=sys.stderr)
        return 0

    def show(value: float | None) -> str:
        return "" if value is None else f"{value:.4g}"

    rows = [
        (
            c.name,
            c.type,
            "" if c.step is None else str(c.step),
            show(c.epoch),
            show(c.train_loss),
            show(c.eval_loss),
            c.timestamp,
            c.location,
        )
        for c in found
    ]
    _table(("NAME", "TYPE", "STEP", "EPOCH", "TRAIN-LOSS", "EVAL-LOSS", "TIME", "LOCATION"), rows)
    return 0


def run_download(args: argparse.Namespace) -> int:
    result = _jobs(args).download(
        args.name, output=args.output, checkpoint_step=args.checkpoint_step, checkpoint_type=args.checkpoint_type
    )
    step = f" (step {result.checkpoint_step})" if result.checkpoint_step is not None else ""
    print(f"{result.id}{step}: {result.size} bytes in {result.filename}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from ..client.serving import ServeRequest  # noqa: PLC0415

    request = ServeRequest(kind=args.kind, owned=args.owned, name=args.serve_name, gpus=args.gpus)
    manifests, created = _jobs(args).serve(args.name, dry_run=args.dry_run, request=request)
    if args.dry_run:
        print(yaml.safe_dump_all(manifests, sort_keys=False), end="")
    else:
        print("\n".join(created))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    print(_jobs(args).delete(args.name).message)
    return 0


# Printing, as kubectl prints -------------------------------------------------------------


def _print_objects(objects: Sequence[Json], *, output: str | None, header: bool = True, as_list: bool = False) -> None:
    if output in ("json", "yaml"):
        body: Any = (
            {"apiVersion": "v1", "kind": "List", "items": list(objects)}
            if as_list
            else (objects[0] if len(objects) == 1 else list(objects))
        )
        _dump(body, output)
        return
    if output == "name":
        for obj in objects:
            print(f"finetunejob.kubetune.dev/{obj['metadata']['name']}")
        return
    wide = output == "wide"
    rows = [_row(obj, wide=wide) for obj in objects]
    if not rows and header:
        print("No resources found.", file=sys.stderr)
        return
    _table(WIDE_COLUMNS if wide else COLUMNS, rows, header=header)


def _row(job: Json, *, wide: bool) -> tuple[str, ...]:
    from ..client.views import together_status  # noqa: PLC0415

    metadata, spec, status = job.get("metadata", {}), job.get("spec", {}), job.get("status", {})
    error = status.get("error") or {}
    row = (
        metadata.get("name", ""),
        status.get("phase") or "",
        status.get("stage") or "",
        (status.get("progress") or {}).get("summary") or "",
        spec.get("model", ""),
        error.get("class", ""),
        _age(metadata.get("creationTimestamp")),
    )
    if not wide:
        return row
    return (
        *row,
        together_status(job).value,
        spec.get("fromHfModel", ""),
        error.get("reason") or _waiting_reason(status),
        str(status.get("attempt", "")),
    )


def _waiting_reason(status: Json) -> str:
    """Why a Queued job waits (BudgetExceeded, Unschedulable, ...): its Scheduled condition's reason."""
    if status.get("phase") != "Queued":
        return ""
    conditions: list[Json] = status.get("conditions") or []
    scheduled: Json = next((c for c in conditions if c.get("type") == "Scheduled"), {})
    return str(scheduled.get("reason", "")) if scheduled.get("status") == "False" else ""


def _age(created: str | None, *, now: datetime | None = None) -> str:
    """kubectl's short age: 45s, 12m, 5h, 3d."""
    if not created:
        return "<unknown>"
    born = datetime.fromisoformat(created.replace("Z", "+00:00"))
    seconds = max(0, int(((now or datetime.now(UTC)) - born).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, header: bool = True) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [headers] if header else []
    for line in [*lines, *rows]:
        print("   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    sys.stdout.flush()


def _dump(body: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(body, indent=4))
    else:
        print(yaml.safe_dump(body, sort_keys=False), end="")
    sys.stdout.flush()
