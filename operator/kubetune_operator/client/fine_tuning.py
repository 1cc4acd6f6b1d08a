"""`client.fine_tuning`: Together's verbs over FineTuneJobs, with the `kubernetes` library.

create, retrieve, list, cancel, delete, list_events, list_checkpoints and download take and
return what Together's SDK does (`id` is the FineTuneJob's name). A refused request (a finished
job cancelled, a step that does not exist) raises `JobRequestError` naming the job and what to do,
and changes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from ..api.errors import validate
from ..api.names import GROUP, VERSION
from ..api.spec import FineTuneJobSpec
from ..api.status import TERMINAL_PHASES
from ..settings import OperatorSettings
from .create_request import build_create_request, new_job_name
from .download import DownloadError, copy_tokenizer, fetch_folder, folder_bytes
from .serving import ServeRefused, ServeRequest, create_serving, ready_to_serve, serving_plan
from .shapes import (
    FinetuneCheckpoint,
    FinetuneDeleteResponse,
    FinetuneDownloadResult,
    FinetuneList,
    FinetuneListEvents,
    FinetuneResponse,
)
from .views import ADAPTER_DIR, checkpoints_of, job_response, sorted_events

PLURAL = "finetunejobs"
Json = dict[str, Any]
Checkpoints = list[FinetuneCheckpoint]
Objects = list[Json]
Lines = list[str]
CheckpointType = Literal["default", "merged", "adapter"]


class JobRequestError(RuntimeError):
    """A request the job's state refuses, or an API failure, in words naming the job and the fix."""


class FineTuning:
    def __init__(self, api: k8s.ApiClient, *, namespace: str, pvc_root: Path | None = None) -> None:
        self._api = api
        self.namespace = namespace
        self._objects = k8s.CustomObjectsApi(api)
        self._core = k8s.CoreV1Api(api)
        root = pvc_root if pvc_root is not None else os.environ.get("KUBETUNE_PVC_ROOT")
        self._pvc_root = Path(root) if root else None

    # Together's verbs -------------------------------------------------------------------

    def create(self, *, training_file: str, name: str | None = None, **arguments: Any) -> FinetuneResponse:
        """Together's keyword arguments (plus kubetune's own, see `build_create_request`) -> a new FineTuneJob."""
        arguments.pop("verbose", None)
        arguments.pop("model_limits", None)  # the template's limits are checked by the operator
        job_name = name or new_job_name()
        request = build_create_request(
            name=job_name, namespace=self.namespace, training_file=training_file, **arguments
        )
        for secret in request.secrets:
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret.name, "labels": {"kubetune.dev/job": job_name}},
                "type": "Opaque",
                "stringData": {secret.key: secret.value},
            }
            self._call(f"creating Secret {secret.name}", self._core.create_namespaced_secret, self.namespace, body)
        created = self._call(
            f"creating FineTuneJob {job_name}",
            self._objects.create_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            request.manifest,
        )
        owner = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FineTuneJob",
            "name": job_name,
            "uid": created["metadata"]["uid"],
        }
        for secret in request.secrets:  # deleted with the job
            patch = {"metadata": {"ownerReferences": [owner]}}
            self._call(
                f"owning Secret {secret.name}", self._core.patch_namespaced_secret, secret.name, self.namespace, patch
            )
        return job_response(created)

    def create_manifest(self, manifest: Json, *, name: str | None = None) -> Json:
        """Create a FineTuneJob from a manifest (as `kubectl create -f`), after the operator's own validation."""
        if manifest.get("kind") != "FineTuneJob":
            raise JobRequestError(
                f"the manifest's kind is {manifest.get('kind')!r}: kubetune jobs creates FineTuneJobs"
            )
        validate(FineTuneJobSpec, manifest.get("spec"), kind="FineTuneJob")
        metadata = dict(manifest.get("metadata") or {})
        metadata["name"] = name or metadata.get("name") or new_job_name()
        metadata["namespace"] = self.namespace
        body = {**manifest, "metadata": metadata}
        return self._call(
            f"creating FineTuneJob {metadata['name']}",
            self._objects.create_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            body,
        )

    def manifest_for(self, *, training_file: str, name: str | None = None, **arguments: Any) -> Json:
        """The FineTuneJob `create` would make from these arguments, without creating anything."""
        arguments.pop("verbose", None)
        arguments.pop("model_limits", None)
        request = build_create_request(
            name=name or new_job_name(), namespace=self.namespace, training_file=training_file, **arguments
        )
        return request.manifest

    def templates(self) -> Objects:
        """The cluster's BaseModelTemplates: what the operator resolves a job's `model` against."""
        listed = self._call(
            "listing BaseModelTemplates",
            self._objects.list_cluster_custom_object,
            GROUP,
            VERSION,
            "basemodeltemplates",
        )
        items: Objects = listed.get("items", [])
        return items

    def retrieve(self, id: str) -> FinetuneResponse:
        return job_response(self._get(id))

    def list(self, *, label_selector: str | None = None) -> FinetuneList:
        listed = self._call(
            "listing FineTuneJobs",
            self._objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            label_selector=label_selector or "",
        )
        jobs = sorted(listed.get("items", []), key=lambda j: j.get("metadata", {}).get("creationTimestamp", ""))
        return FinetuneList(data=[job_response(j) for j in jobs])

    def cancel(self, id: str) -> FinetuneResponse:
        """Set spec.cancel: the operator removes the pods and ends the job Cancelled, keeping its checkpoints."""
        job = self._get(id)
        phase = job.get("status", {}).get("phase")
        if phase in TERMINAL_PHASES:
            raise JobRequestError(
                f"FineTuneJob {id} already finished ({phase}): there is nothing to cancel. "
                f"Delete it with `kubetune jobs delete {id}`, or continue from it with fromCheckpoint: {id}"
            )
        patch = {"metadata": {"resourceVersion": job["metadata"]["resourceVersion"]}, "spec": {"cancel": True}}
        patched = self._call(
            f"cancelling FineTuneJob {id}",
            self._objects.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            id,
            patch,
            _content_type="application/merge-patch+json",
        )
        return job_response(patched)

    def delete(self, id: str, force: bool = False) -> FinetuneDeleteResponse:
        self._get(id)
        self._call(
            f"deleting FineTuneJob {id}",
            self._objects.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            id,
            body={"propagationPolicy": "Background"},
        )
        return FinetuneDeleteResponse(message=f"FineTuneJob {id} deleted, with its pods and Secrets")

    def list_events(self, id: str) -> FinetuneListEvents:
        job = self._get(id)
        return FinetuneListEvents(data=sorted_events(self._events(job)))

    def list_checkpoints(self, id: str) -> Checkpoints:
        return checkpoints_of(self._get(id))

    def download(
        self,
        id: str,
        *,
        output: Path | str | None = None,
        checkpoint_step: int | None = None,
        checkpoint_type: CheckpointType | str = "default",
    ) -> FinetuneDownloadResult:
        """Copy the trained model (or checkpoint `checkpoint_step`) into folder `output` (default ./<job>)."""
        if ":" in id:
            job_name, _, step_text = id.partition(":")
            if checkpoint_step is not None:
                raise JobRequestError(f"{id} names a step and checkpoint_step={checkpoint_step} another: give one")
            id, checkpoint_step = job_name, int(step_text)
        kind = str(checkpoint_type).lower()
        if kind not in ("default", "merged", "adapter"):
            raise JobRequestError(f"checkpoint_type {checkpoint_type!r}: choose default, merged or adapter")
        job = self._get(id)
        target = Path(output) if output is not None else Path.cwd() / id
        if target.exists() and any(target.iterdir()):
            raise JobRequestError(f"{target} exists and is not empty: name another output folder for {id}")
        checkpoints = checkpoints_of(job)
        try:
            if checkpoint_step is None:
                size = self._download_final(job, checkpoints, target, kind)
            else:
                size = self._download_step(job, checkpoints, target, checkpoint_step, kind)
        except DownloadError as error:
            raise JobRequestError(f"FineTuneJob {id}: {error}") from None
        return FinetuneDownloadResult(id=id, checkpoint_step=checkpoint_step, filename=str(target), size=size)

    # kubetune's own ----------------------------------------------------------------------

    def serve(self, id: str, *, dry_run: bool = False, request: ServeRequest | None = None) -> tuple[Objects, Lines]:
        """The serving objects of spec.serve (or `request`'s), and, unless `dry_run`, what creating them did."""
        job = self._get(id)
        try:
            plan = serving_plan(job, request or ServeRequest(), settings=OperatorSettings())
            if dry_run:
                return plan.manifests, []
            ready_to_serve(job)
            created = create_serving(self._api, plan, namespace=self.namespace, uid=job["metadata"]["uid"])
        except ServeRefused as refused:
            raise JobRequestError(str(refused)) from None
        return plan.manifests, created

    def logs(self, id: str, *, tail_lines: int | None = None) -> str:
        """Rank 0's log of the newest attempt (the preflight's before any attempt)."""
        job = self._get(id)
        pods = self._call(
            f"listing the pods of {id}",
            self._core.list_namespaced_pod,
            self.namespace,
            label_selector=f"kubetune.dev/job={id}",
        ).get("items", [])
        if not pods:
            raise JobRequestError(
                f"FineTuneJob {id} has no pod now ({job.get('status', {}).get('phase')}): "
                f"its Events say what happened (`kubetune jobs events {id}`)"
            )
        newest = max(pods, key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
        pod = newest["metadata"]["name"]
        kwargs: Json = {"tail_lines": tail_lines} if tail_lines is not None else {}
        text = self._call_raw(
            f"reading the log of {pod}", self._core.read_namespaced_pod_log, pod, self.namespace, **kwargs
        )
        return text.decode(errors="replace")

    def watch(self, id: str | None = None, *, timeout_seconds: int | None = None) -> Iterator[FinetuneResponse]:
        """Each change of one job (or of every job in the namespace), as `kubectl get -w` shows it."""
        selector = {"field_selector": f"metadata.name={id}"} if id else {}
        stream = k8s_watch.Watch().stream(  # type: ignore[no-untyped-call]
            self._objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            timeout_seconds=timeout_seconds,
            **selector,
        )
        for event in stream:
            if event.get("type") in ("ADDED", "MODIFIED"):
                yield job_response(event["object"])

    # internals -------------------------------------------------------------------------

    def _get(self, name: str) -> Json:
        try:
            found: Json = self._call_raw_json(
                self._objects.get_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                raise JobRequestError(
                    f"FineTuneJob {name} not found in namespace {self.namespace}: `kubetune jobs list` shows its jobs"
                ) from None
            raise _api_error(f"reading FineTuneJob {name}", error) from None
        return found

    def _events(self, job: Json) -> Objects:
        uid = job["metadata"].get("uid")
        selector = f"involvedObject.kind=FineTuneJob,involvedObject.name={job['metadata']['name']}"
        listed = self._call(
            "listing Events", self._core.list_namespaced_event, self.namespace, field_selector=selector
        ).get("items", [])
        return [e for e in listed if uid is None or e.get("involvedObject", {}).get("uid") in (None, uid)]

    def _download_final(self, job: Json, checkpoints: Checkpoints, target: Path, kind: str) -> int:
        name = job["metadata"]["name"]
        finals = {c.type: c for c in checkpoints if c.step is None}
        if not finals:
            phase = job.get("status", {}).get("phase")
            steps = [c.step for c in checkpoints if c.step is not None]
            also = f"; its checkpoints are at steps {steps} (--checkpoint-step N)" if steps else ""
            raise JobRequestError(f"FineTuneJob {name} has no trained model ({phase}){also}")
        if "Final" in finals:
            if kind == "adapter":
                raise JobRequestError(f"FineTuneJob {name} trained every weight (no LoRA): it has no adapter")
            return fetch_folder(finals["Final"].location, target, pvc_root=self._pvc_root)
        if kind == "adapter":
            adapter = finals["Final Adapter"]
            size = fetch_folder(adapter.location, target, pvc_root=self._pvc_root)
            if "Final Merged" in finals:  # the merged folder holds the tokenizer beside its adapter/
                with _Scratch(target) as whole:
                    fetch_folder(finals["Final Merged"].location, whole, pvc_root=self._pvc_root)
                    copy_tokenizer(whole, target)
                size = folder_bytes(target)
            return size
        if "Final Merged" not in finals:
            raise JobRequestError(
                f"FineTuneJob {name} saved a LoRA adapter only (lora.merge false): download it with "
                "checkpoint_type='adapter' (--checkpoint-type adapter) and load it over its base model"
            )
        size = fetch_folder(finals["Final Merged"].location, target, pvc_root=self._pvc_root)
        if (target / ADAPTER_DIR).is_dir():
            shutil.rmtree(target / ADAPTER_DIR)
            size = folder_bytes(target)
        return size

    def _download_step(self, job: Json, checkpoints: Checkpoints, target: Path, step: int, kind: str) -> int:
        name = job["metadata"]["name"]
        found = [c for c in checkpoints if c.step == step]
        if not found:
            steps = sorted(c.step for c in checkpoints if c.step is not None)
            listed = f"steps {steps}" if steps else "none yet"
            raise JobRequestError(
                f"FineTuneJob {name} has no checkpoint at step {step} (its checkpoints: {listed}); "
                f"`kubetune jobs checkpoints {name}` lists them"
            )
        from .checkpoint_export import export_checkpoint, step_folder_name  # noqa: PLC0415 - the ML stack

        location = f"{found[0].location.rstrip('/')}/{step_folder_name(step)}"
        with _Scratch(target) as raw:
            fetch_folder(location, raw, pvc_root=self._pvc_root)
            export_checkpoint(job, raw, target, merged=kind != "adapter")
        return folder_bytes(target)

    @staticmethod
    def _call_raw_json(method: Any, *args: Any) -> Json:
        parsed: Json = json.loads(method(*args, _preload_content=False).data or b"{}")
        return parsed

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Json:
        parsed: Json = json.loads(self._call_raw(what, method, *args, **kwargs) or b"{}")
        return parsed

    def _call_raw(self, what: str, method: Any, *args: Any, **kwargs: Any) -> bytes:
        try:
            response = method(*args, _preload_content=False, **kwargs)
        except ApiException as error:
            raise _api_error(what, error) from None
        data: bytes = response.data
        return data


class _Scratch:
    """A temporary folder beside `target`, removed afterwards."""

    def __init__(self, target: Path) -> None:
        self.path = target.parent / f".{target.name}.partial"

    def __enter__(self) -> Path:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _api_error(what: str, error: ApiException) -> JobRequestError:
    message = error.reason or ""
    try:
        body = json.loads(error.body or "{}")
        message = body.get("message", message)
    except ValueError:
        pass
    return JobRequestError(f"{what}: the API answered {error.status}: {message}")
