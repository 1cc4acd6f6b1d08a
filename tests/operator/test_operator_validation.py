"""Item 1 and 7 through the operator: a bad spec fails as InvalidInput with no children; a missing template waits."""

from __future__ import annotations

import asyncio
import copy
import re

from kubetune_operator.handlers.webhook import spec_problems
from kubetune_sandbox.emulator import ApiEmulator

from ..conftest import CATALOG_DIR, load_yaml
from ..kubectl import kubectl
from .cluster_actors import NAMESPACE, Actors, wait_for
from .conftest import CONFIGMAPS, FTJ, JOBS, TEMPLATES, RunningOperator, StartOperator, job_manifest, status_of
from .journeys import error_of, until_phase


def _children(cluster: ApiEmulator, name: str) -> list[str]:
    return [
        obj["metadata"]["name"]
        for resource in (JOBS, CONFIGMAPS)
        for obj in cluster.live_objects(resource, NAMESPACE)
        if obj["metadata"]["name"].startswith(name)
    ]


async def test_a_spec_the_models_refuse_fails_as_invalid_input_with_no_children(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    # The CRD schema admits it (the cross-field rule is CEL, which only a real API server runs).
    await actors.apply_job(job_manifest("auto", model="auto"))
    await until_phase(cluster, "auto", "Failed")
    error = error_of(cluster, "auto")
    assert (error["class"], error["reason"]) == ("InvalidInput", "InvalidSpec")
    assert "fromHfModel" in error["message"]
    assert _children(cluster, "auto") == []


async def test_the_webhook_refuses_what_the_reconciler_fails() -> None:
    problems = spec_problems(job_manifest("auto", model="auto")["spec"])
    assert any("fromHfModel" in problem for problem in problems)
    assert spec_problems(job_manifest("fine")["spec"]) == []


async def test_the_api_refuses_a_spec_outside_the_crd_schema_naming_the_field(cluster: ApiEmulator) -> None:
    manifest = job_manifest("bad", hyperparameters={"nEpochs": 0})
    async with cluster.post(
        f"/apis/kubetune.dev/v1alpha1/namespaces/{NAMESPACE}/finetunejobs", json=manifest
    ) as answer:
        assert answer.status == 422
        body = await answer.json()
    assert [cause["field"] for cause in body["details"]["causes"]] == ["spec.hyperparameters.nEpochs"]


async def test_a_missing_template_waits_with_template_not_found_then_proceeds_once_installed(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await actors.apply_job(job_manifest("later", model="acme/llama-custom"))
    status = await wait_for(
        lambda: (
            any(c["reason"] == "TemplateNotFound" for c in status_of(cluster, "later").get("conditions", []))
            and status_of(cluster, "later")
        ),
        what="the TemplateNotFound condition",
    )
    assert status["phase"] == "Pending"
    assert _children(cluster, "later") == []
    # At once in the ERROR and REASON columns, not only in a condition `kubectl get` never shows.
    assert (status["error"]["class"], status["error"]["reason"]) == ("InvalidInput", "TemplateNotFound")
    assert status["error"]["retryable"] is True
    code, table = await kubectl(cluster.url, "get", "ftj", "later", "-n", NAMESPACE, "-o", "wide")
    assert code == 0, table
    header, row = table.splitlines()[:2]
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    cells = [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    columns = dict(zip(header.split(), cells, strict=True))
    assert (columns["PHASE"], columns["ERROR"], columns["REASON"]) == ("Pending", "InvalidInput", "TemplateNotFound")

    template = copy.deepcopy(load_yaml(CATALOG_DIR / "llama-3.2-1b-instruct.yaml"))
    template["metadata"] = {"name": "llama-custom"}
    template["spec"]["aliases"] = ["acme/llama-custom"]
    async with cluster.post("/apis/kubetune.dev/v1alpha1/basemodeltemplates", json=template) as made:
        assert made.status < 400
    await until_phase(cluster, "later", "Validating")
    assert "error" not in status_of(cluster, "later")  # proceeding clears it
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "later-preflight"), what="the preflight Job")
    assert cluster.live(TEMPLATES, None, "llama-custom") is not None


async def test_an_operator_scoped_to_namespaces_leaves_other_namespaces_alone(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator
) -> None:
    elsewhere = job_manifest("elsewhere")
    elsewhere["metadata"]["namespace"] = "other"
    async with cluster.post("/apis/kubetune.dev/v1alpha1/namespaces/other/finetunejobs", json=elsewhere) as made:
        assert made.status < 400
    await start_operator(namespaces=("ml",))
    await actors.apply_job(job_manifest("here"))
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "here-preflight"), what="the watched namespace's job")
    await asyncio.sleep(0.5)
    ignored = cluster.live(FTJ, "other", "elsewhere")
    assert ignored is not None
    assert "status" not in ignored
