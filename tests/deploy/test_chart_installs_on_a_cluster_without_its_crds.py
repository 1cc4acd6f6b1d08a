"""`helm install` on a cluster that has never seen kubetune: Helm maps every object of the release to
an API resource before it creates any, so an object whose kind a CRD of the same release defines
fails the whole install ("no matches for kind BaseModelTemplate ... ensure CRDs are installed
first"). Such objects must be post-install/post-upgrade hooks, which Helm maps and creates only
after the release's objects (the CRDs among them) exist. The documented install waits
(`--wait`), which holds the hooks until the CRDs are Established: on control planes with several
API servers that takes seconds, and a hook mapped earlier fails the same way.
"""

from __future__ import annotations

from typing import Any

import pytest

from .chart import VARIANTS, render

AFTER_THE_RELEASE = {"post-install", "post-upgrade"}


def _crd_kinds(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
        for crd in objects
        if crd["kind"] == "CustomResourceDefinition"
        for version in crd["spec"]["versions"]
    }


def _hooks(obj: dict[str, Any]) -> set[str]:
    annotations = obj["metadata"].get("annotations") or {}
    return {h.strip() for h in annotations.get("helm.sh/hook", "").split(",") if h.strip()}


@pytest.mark.parametrize(
    "values",
    [*VARIANTS.values(), {"replicas": 2}, {"replicas": 2, "watchNamespaces": ["ml"]}],
    ids=[*VARIANTS, "peering", "peering-namespaced"],
)
def test_objects_of_the_charts_own_kinds_are_created_after_the_release(values: dict[str, Any]) -> None:
    objects = [r.obj for r in render(values)]
    own_kinds = _crd_kinds(objects)
    assert own_kinds, "the chart installs its CRDs"
    of_own_kind = [o for o in objects if (o["apiVersion"], o["kind"]) in own_kinds]
    assert of_own_kind, "the catalog (or the peering object) is installed"
    for obj in of_own_kind:
        assert _hooks(obj) == AFTER_THE_RELEASE, (obj["kind"], obj["metadata"]["name"])
        # Helm creates a hook object on every upgrade: the previous one must go first.
        assert obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation"
    # The CRDs themselves are ordinary release objects: upgraded, kept on uninstall.
    for crd in (o for o in objects if o["kind"] == "CustomResourceDefinition"):
        assert _hooks(crd) == set()


def test_the_catalog_keeps_its_release_labels_and_comments_out_of_the_hook_annotations() -> None:
    objects = [r.obj for r in render({})]
    templates = [o for o in objects if o["kind"] == "BaseModelTemplate"]
    assert len(templates) >= 10
    for template in templates:
        assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "kubetune"
        assert set(template["metadata"]["annotations"]) == {
            "helm.sh/hook",
            "helm.sh/hook-weight",
            "helm.sh/hook-delete-policy",
        }
