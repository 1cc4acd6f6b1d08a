"""`kubetune jobs serve NAME`: the serving objects the operator makes for spec.serve, made (or printed) on request.

The same renderer as the operator's, from the same record (status.resolved), so `--dry-run` prints exactly
what the operator creates on success; for a job without spec.serve, or one whose serving was refused
(KServe absent then, no rights), `--kind` asks for it now. Refusals name the job and what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from ..api.record import ResolvedJob
from ..api.serve import ServeSpec
from ..api.status import Phase
from ..render.inference_service import KSERVE_API_VERSION
from ..render.labels import JobRef
from ..render.serving import ServingPlan, render_serving
from ..render.serving_parts import SERVED_UID_ANNOTATION
from ..resolve.serving import serving_problems
from ..settings import OperatorSettings

Json = dict[str, Any]


class ServeRefused(RuntimeError):
    """A serve request the job's state or the cluster refuses, in words naming the job and the fix."""


@dataclass(frozen=True)
class ServeRequest:
    """The command line's choices; each None keeps spec.serve's value."""

    kind: str | None = None
    owned: bool | None = None
    name: str | None = None
    gpus: int | None = None


def serving_plan(job: Json, request: ServeRequest, *, settings: OperatorSettings) -> ServingPlan:
    """What serving `job` creates: spec.serve with the request's changes, rendered from its record."""
    metadata, spec, status = job["metadata"], job.get("spec") or {}, job.get("status") or {}
    name = metadata["name"]
    asked: Json = dict(spec.get("serve") or {})
    for key, value in (("kind", request.kind), ("owned", request.owned), ("name", request.name)):
        if value is not None:
            asked[key] = value
    if request.gpus is not None:
        asked["gpus"] = request.gpus
    if "kind" not in asked:
        raise ServeRefused(f"FineTuneJob {name} has no spec.serve: say what to create with --kind kserve or vllm")
    try:
        serve = ServeSpec.parse(asked)
    except ValidationError as error:
        raise ServeRefused(f"FineTuneJob {name}: {error.errors()[0]['msg']} ({error.errors()[0]['loc']})") from None
    resolved = status.get("resolved") or {}
    if not resolved.get("record"):
        raise ServeRefused(
            f"FineTuneJob {name} is {status.get('phase') or 'Pending'} and not admitted yet: what it trains is known "
            f"once its preflight passed (`kubetune jobs get {name} -w`)"
        )
    record = ResolvedJob.parse(resolved["record"])
    problems = serving_problems(serve, record)
    if problems:
        raise ServeRefused(f"FineTuneJob {name}: " + "; ".join(str(p) for p in problems))
    ref = JobRef(namespace=metadata["namespace"], name=name, uid=metadata["uid"])
    return render_serving(serve, record, job=ref, parameters=resolved.get("parameters"), settings=settings)


def ready_to_serve(job: Json) -> None:
    """Only a Succeeded job has a model to serve."""
    phase = (job.get("status") or {}).get("phase")
    if phase != Phase.SUCCEEDED:
        name = job["metadata"]["name"]
        raise ServeRefused(
            f"FineTuneJob {name} is {phase or 'Pending'}: it has a model to serve once it Succeeded; "
            f"--dry-run prints what would be created"
        )


def create_serving(api: k8s.ApiClient, plan: ServingPlan, *, namespace: str, uid: str) -> list[str]:
    """Create each object unless this job's copy exists: `kind/name created` or `unchanged`, as kubectl prints."""
    apps, core, custom = k8s.AppsV1Api(api), k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    group, version = KSERVE_API_VERSION.split("/")
    printed = []
    creators: dict[str, tuple[Any, tuple[str, ...], str]] = {
        # The client's typed signatures take its models; a plain dict body is what it sends either way.
        "Deployment": (apps.create_namespaced_deployment, (namespace,), "deployment.apps"),
        "Service": (core.create_namespaced_service, (namespace,), "service"),
        "InferenceService": (
            custom.create_namespaced_custom_object,
            (group, version, namespace, "inferenceservices"),
            "inferenceservice.serving.kserve.io",
        ),
    }
    for manifest in plan.manifests:
        create, args, shown = creators[manifest["kind"]]
        try:
            create(*args, manifest, _preload_content=False)
            printed.append(f"{shown}/{manifest['metadata']['name']} created")
        except ApiException as error:
            printed.append(_existing(api, manifest, error, namespace=namespace, uid=uid))
    return printed


def _existing(api: k8s.ApiClient, manifest: Json, error: ApiException, *, namespace: str, uid: str) -> str:
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    if error.status == 404 and kind == "InferenceService":
        raise ServeRefused(
            f"the {KSERVE_API_VERSION} API is not installed in this cluster: install KServe, or serve with --kind vllm"
        ) from None
    if error.status != 409:
        raise ServeRefused(f"creating {kind} {name}: the API answered {error.status}: {error.reason}") from None
    annotations = _stored(api, manifest, namespace=namespace).get("metadata", {}).get("annotations") or {}
    if annotations.get(SERVED_UID_ANNOTATION) != uid:
        raise ServeRefused(f"{kind} {name} exists and serves something else: name yours with --name") from None
    return f"{kind.lower()}/{name} unchanged"


def _stored(api: k8s.ApiClient, manifest: Json, *, namespace: str) -> Json:
    """The object named like `manifest`, as the API stores it."""
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    response: Any
    if kind == "Deployment":
        response = k8s.AppsV1Api(api).read_namespaced_deployment(name, namespace, _preload_content=False)
    elif kind == "Service":
        response = k8s.CoreV1Api(api).read_namespaced_service(name, namespace, _preload_content=False)
    else:
        group, version = KSERVE_API_VERSION.split("/")
        response = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            group, version, namespace, "inferenceservices", name, _preload_content=False
        )
    found: Json = json.loads(response.data or b"{}")
    return found
