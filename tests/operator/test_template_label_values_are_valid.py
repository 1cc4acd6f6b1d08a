"""A template's gpuProduct and nodeSelector values become node-selector label values: 63 characters, label charset."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kubetune_operator.api.template import Resources


def _resources(**fields: Any) -> Resources:
    return Resources.parse({"gpusPerNode": 8, **fields})


@pytest.mark.parametrize(
    "fields",
    [
        {"gpuProduct": "NVIDIA-H100-80GB-HBM3-" + "X" * 50},
        {"gpuProduct": "NVIDIA H100 80GB"},
        {"nodeSelector": {"pool": "gpu pool"}},
        {"nodeSelector": {"pool": "-gpu"}},
    ],
)
def test_a_value_no_label_can_hold_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _resources(**fields)


def test_label_values_kubernetes_accepts_pass() -> None:
    ok = _resources(gpuProduct="NVIDIA-H100-80GB-HBM3", nodeSelector={"pool": "gpu_a.100", "empty": ""})
    assert ok.gpu_product == "NVIDIA-H100-80GB-HBM3"
    assert ok.node_selector == {"pool": "gpu_a.100", "empty": ""}
