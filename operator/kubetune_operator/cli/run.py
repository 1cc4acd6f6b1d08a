"""`kubetune run JOB.yaml --local`: a FineTuneJob on this machine, through the operator's own code.

The manifest is parsed and resolved against the template catalog by the operator's
`resolve_job` (`model: auto` included: config.json is read from the hub or the local HF cache
by the trainer's model rules, as the preflight pod would), and `build_trainer_config` builds
the same TrainerConfig the operator puts in the job's ConfigMap. Only the local parts change:
progress goes to the terminal, the HF cache is --hf-home (or HF_HOME), scratch space is
--workdir, pvc:// claims are directories under --pvc-root, and an s3:// or hf:// output (or
checkpoint location) becomes a directory under --workdir unless --upload is given. Then the
trainer's stages run in this process, or under torchrun with --nproc-per-node N.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from kubetune_trainer.contract import JobIdentity, ModelFacts, ReportTarget, TrainerConfig

from ..api.errors import InvalidResourceError, validate
from ..api.manifest_yaml import ManifestYamlError, read_documents
from ..api.resources import FineTuneJob
from ..render.object_store import local_object_store_env
from ..render.trainer_config import HF_TOKEN_ENV, build_trainer_config
from ..resolve.catalog import load_catalog
from ..resolve.resolution import Resolution, resolve_job
from ..settings import OperatorSettings
from .check import hub_cache_dir

EXIT_INVALID = 2
CONFIG_FILE = "trainer-config.json"
TERMINATION_LOG = "termination-log"


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "run", help="run a FineTuneJob manifest on this machine (--local)", description=__doc__
    )
    parser.add_argument("manifest", type=Path, metavar="JOB.yaml", help="a FineTuneJob manifest")
    parser.add_argument("--local", action="store_true", help="run here, not in a cluster (required)")
    parser.add_argument("--nproc-per-node", type=int, default=1, metavar="N", help="processes, under torchrun if > 1")
    parser.add_argument("--workdir", type=Path, help="scratch and local outputs (default ./kubetune-runs/<job>)")
    parser.add_argument("--hf-home", type=Path, help="HF_HOME whose hub cache holds models (default: HF_HOME)")
    parser.add_argument("--pvc-root", type=Path, help="directory holding pvc:// claims (default <workdir>/pvc)")
    parser.add_argument("--catalog", type=Path, help="directory of BaseModelTemplate YAML (default: the packaged one)")
    parser.add_argument("--upload", action="store_true", help="upload to an s3:// or hf:// output for real")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    if args.hf_home is not None:
        environ["HF_HOME"] = str(args.hf_home)
    return run_local(args, environ=environ, stream=sys.stderr)


def run_local(args: argparse.Namespace, *, environ: Mapping[str, str], stream: TextIO) -> int:
    if not args.local:
        print("kubetune run needs --local; in a cluster, `kubectl apply -f` the manifest instead", file=stream)
        return EXIT_INVALID
    if args.nproc_per_node < 1:
        print("--nproc-per-node must be at least 1", file=stream)
        return EXIT_INVALID
    job = _read_job(args.manifest, stream=stream)
    if job is None:
        return EXIT_INVALID
    environ, storage_note = local_object_store_env(job.spec.storage.s3 if job.spec.storage else None, environ)
    if storage_note is not None:
        print(f"note: {storage_note}", file=stream)
    workdir = (args.workdir or Path("kubetune-runs") / job.metadata.name).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config = _trainer_config(job, args=args, environ=environ, workdir=workdir, stream=stream)
    if isinstance(config, int):
        return config
    config_file = workdir / CONFIG_FILE
    config_file.write_text(config.to_json(), encoding="utf-8")
    print(f"trainer config: {config_file}", file=stream)
    if args.nproc_per_node > 1:
        code = _torchrun(config_file, nproc=args.nproc_per_node, environ=environ, stream=stream)
    else:
        # The trainer's entry point itself, in this process: the same code a trainer pod runs.
        from kubetune_trainer.cli import main as trainer_main  # noqa: PLC0415 (torch loads only for a run)

        code = trainer_main(["--config", str(config_file)], environ=environ, stream=stream)
    if code == 0:
        _print_how_to_load(config, stream=stream)
    return code


def _print_how_to_load(config: TrainerConfig, *, stream: TextIO) -> None:
    """Where the model is on this machine and the two lines that load it, when it is a local directory."""
    uri = config.output.uri
    if uri.startswith("pvc://"):
        local = Path(config.data.pvc_mount_root) / uri.removeprefix("pvc://")
    elif "://" not in uri or uri.startswith("file://"):
        local = Path(uri.removeprefix("file://"))
    else:
        return
    print(f"model: {local}", file=stream)
    print("load it:", file=stream)
    print("  from transformers import AutoModelForCausalLM, AutoTokenizer", file=stream)
    print(f"  model = AutoModelForCausalLM.from_pretrained({str(local)!r})", file=stream)
    print(f"  tokenizer = AutoTokenizer.from_pretrained({str(local)!r})", file=stream)


def _read_job(path: Path, *, stream: TextIO) -> FineTuneJob | None:
    try:
        documents = read_documents(path)
    except ManifestYamlError as unreadable:
        print(unreadable, file=stream)
        return None
    jobs = [d for d in documents if isinstance(d, dict) and d.get("kind") == "FineTuneJob"]
    if len(jobs) != 1:
        print(f"{path}: not a FineTuneJob manifest: it must hold one document of kind FineTuneJob", file=stream)
        return None
    (document,) = jobs
    try:
        return validate(FineTuneJob, document, kind="FineTuneJob")
    except InvalidResourceError as invalid:
        print(f"InvalidInput (InvalidSpec): {path} is not a valid FineTuneJob", file=stream)
        for error in invalid.errors:
            print(f"  {error}", file=stream)
        return None


def _trainer_config(
    job: FineTuneJob, *, args: argparse.Namespace, environ: Mapping[str, str], workdir: Path, stream: TextIO
) -> TrainerConfig | int:
    """Resolve as the operator does (facts from config.json, as its preflight reads them), then localize.

    An int is the exit code of a job that cannot start: the code of its error class (2 for a refusal).
    """
    try:
        catalog = load_catalog(args.catalog)
    except (InvalidResourceError, ManifestYamlError, OSError) as unreadable:
        print(f"cannot read the template catalog {args.catalog}: {unreadable}", file=stream)
        return EXIT_INVALID
    settings = OperatorSettings()
    name, namespace = job.metadata.name, job.metadata.namespace or "default"

    def resolve(facts: ModelFacts | None) -> Resolution:
        return resolve_job(
            job.spec, job_name=name, namespace=namespace, templates=catalog.templates, settings=settings, facts=facts
        )

    first = resolve(None)
    target = first.preflight_job
    if target is None:
        _print_unresolved(first, stream=stream)
        return EXIT_INVALID
    cache_dir = hub_cache_dir(environ)
    try:
        facts = _model_facts(
            target.model_repo,
            revision=target.revision,
            token_env=HF_TOKEN_ENV if target.hf_token_secret_ref else None,
            cache_dir=cache_dir,
            environ=environ,
        )
    except Exception as failed:
        return _print_error(failed, stream=stream)
    resolution = resolve(facts)
    if resolution.job is None:
        _print_unresolved(resolution, stream=stream)
        return EXIT_INVALID
    resolved = resolution.job
    print(f"template {resolved.template.name} for {resolved.model_repo}@{resolved.revision}", file=stream)
    for reason in resolved.template_reasons:
        print(f"  because {reason}", file=stream)
    config = build_trainer_config(
        resolved,
        job=JobIdentity(namespace=namespace, name=name, uid=f"local-{uuid.uuid4().hex[:12]}"),
        report=ReportTarget(kind="terminal"),
        pvc_mount_root=str((args.pvc_root or workdir / "pvc").resolve()),
        cache_dir=str(cache_dir),
        work_dir=str(workdir),
    )
    return _localized(config, workdir=workdir, upload=args.upload, stream=stream)


def _model_facts(
    repo: str, *, revision: str, token_env: str | None, cache_dir: Path, environ: Mapping[str, str]
) -> ModelFacts:
    from kubetune_trainer.model_source import inspect_repo  # noqa: PLC0415 (needs the trainer extra)

    inspection = inspect_repo(
        repo, revision=revision, token_env=token_env, template=None, cache_dir=cache_dir, environ=environ
    )
    return inspection.check.facts_or_raise()


def _localized(config: TrainerConfig, *, workdir: Path, upload: bool, stream: TextIO) -> TrainerConfig:
    """The config with object-store and Hub locations mapped to directories, and a local termination log."""
    output_uri = _local_location(config.output.uri, workdir=workdir, upload=upload, what="output", stream=stream)
    checkpoint_uri = config.runtime.checkpoint_uri
    if checkpoint_uri is not None:
        checkpoint_uri = _local_location(
            checkpoint_uri, workdir=workdir, upload=upload, what="checkpoints", stream=stream
        )
    checkpoint_root = config.runtime.checkpoint_root
    if checkpoint_root is not None:  # mapped as the uri is, so `<root>/<job>` stays inside it
        checkpoint_root = _local_location(checkpoint_root, workdir=workdir, upload=upload, what="", stream=None)
    for what, uri in (("output", output_uri), ("trainingFile", config.data.training_file)):
        if uri.startswith("pvc://"):
            local = Path(config.data.pvc_mount_root) / uri.removeprefix("pvc://")
            print(f"{what} {uri} is the local directory {local} (pvc:// claims map to --pvc-root)", file=stream)
    return config.model_copy(
        update={
            "output": config.output.model_copy(update={"uri": output_uri}),
            "runtime": config.runtime.model_copy(
                update={"checkpoint_uri": checkpoint_uri, "checkpoint_root": checkpoint_root}
            ),
            "termination_log_path": str(workdir / TERMINATION_LOG),
        }
    )


def _local_location(uri: str, *, workdir: Path, upload: bool, what: str, stream: TextIO | None) -> str:
    scheme, _, rest = uri.partition("://")
    if upload or scheme not in {"s3", "hf"}:
        return uri
    local = workdir / scheme / rest.strip("/")
    if stream is not None:
        print(f"{what} {uri} is written to {local} in a local run (--upload writes to {uri})", file=stream)
    return str(local)


def _print_unresolved(resolution: Resolution, *, stream: TextIO) -> None:
    problem = resolution.problem.value if resolution.problem else "Unresolved"
    print(f"InvalidInput ({problem}): {resolution.message}", file=stream)
    for line in resolution.field_errors:
        print(f"  {line}", file=stream)


def _print_error(failed: Exception, *, stream: TextIO) -> int:
    """Print a trainer error as a failed run would; returns its exit code (a hub outage is not a refusal)."""
    from kubetune_trainer.classify import exit_code_for  # noqa: PLC0415
    from kubetune_trainer.errors import TrainerError  # noqa: PLC0415

    if not isinstance(failed, TrainerError):
        raise failed
    known: TrainerError = failed
    print(f"{known.error_class.value} ({known.reason}): {known.message}", file=stream)
    if known.hint:
        print(f"  hint: {known.hint}", file=stream)
    return exit_code_for(known.to_job_error())


def _torchrun(config_file: Path, *, nproc: int, environ: Mapping[str, str], stream: TextIO) -> int:
    """`torchrun --standalone --nproc-per-node N -m kubetune_trainer --config FILE`, with this Python."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "kubetune_trainer",
        "--config",
        str(config_file),
    ]
    print(f"running {' '.join(['torchrun', *command[3:]])}", file=stream)
    stream.flush()
    # Rank 0 draws the progress bar on the terminal this command was started from.
    finished = subprocess.run(command, env=dict(environ), check=False)
    return finished.returncode
