"""The chart's CRD templates render to exactly the generated CRDs (and to crds/), plus only chart metadata."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubetune_operator.api import crdgen
from kubetune_operator.cli import main as kubetune

from ..conftest import CRD_DIR, REPO, load_yaml
from .chart import of_kind, render

CHART_ONLY_METADATA = ("labels", "annotations")


def _without_chart_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    plain = copy.deepcopy(crd)
    for key in CHART_ONLY_METADATA:
        plain["metadata"].pop(key, None)
    return plain


def _chart_crds(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    crds = of_kind(render(values), "CustomResourceDefinition")
    return {crd["metadata"]["name"]: crd for crd in crds if crd["spec"]["group"] == "kubetune.dev"}


def test_rendered_crds_equal_the_generator_and_the_crds_folder() -> None:
    rendered = _chart_crds({})
    generated = {crd["metadata"]["name"]: crd for crd in (build() for build in crdgen.CRD_FILES.values())}
    folder = {crd["metadata"]["name"]: crd for crd in (load_yaml(CRD_DIR / name) for name in crdgen.CRD_FILES)}

    assert set(rendered) == {"finetunejobs.kubetune.dev", "basemodeltemplates.kubetune.dev"}
    assert {name: _without_chart_metadata(crd) for name, crd in rendered.items()} == generated
    assert folder == generated


def test_chart_crd_templates_are_up_to_date_with_the_models(capsys: pytest.CaptureFixture[str]) -> None:
    """`kubetune crds --check` at the repo root checks both copies; both must be current."""
    crds_folder = REPO / "crds"
    chart_folder = REPO / "charts" / "kubetune" / "templates" / "crds"
    code = kubetune(["crds", "--check", "--out", str(crds_folder), "--chart-out", str(chart_folder)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert f"{chart_folder / 'finetunejobs.yaml'}: up to date" in printed.out


def test_crds_are_kept_on_uninstall_unless_told_otherwise() -> None:
    for crd in _chart_crds({}).values():
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    for crd in _chart_crds({"crds": {"keep": False}}).values():
        assert "annotations" not in crd["metadata"]


def test_crds_install_false_leaves_them_out() -> None:
    assert _chart_crds({"crds": {"install": False}}) == {}
