"""An optional kopf validating webhook for FineTuneJobs (off by default): the operator's own pydantic checks.

It runs the same `parse_spec` the reconciler runs, so `kubectl apply` is refused with the same
field-by-field message the job would otherwise fail with (phase Failed, InvalidInput). Keep it
scoped to our CRs: a broken webhook must never block other resources in the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kopf

from ..api.names import GROUP, VERSION
from ..resolve.pod_additions import pod_addition_problems
from ..resolve.resolution import Resolution, parse_spec
from ..settings import OperatorSettings


@dataclass(frozen=True)
class WebhookOptions:
    port: int = 9443
    host: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    managed_name: str | None = "kubetune.dev"
    """Name of the ValidatingWebhookConfiguration kopf keeps in sync; None leaves it to the chart."""


def spec_problems(spec: Any, *, allowing: OperatorSettings | None = None) -> list[str]:
    """Every reason the spec is refused, one per bad field; empty when it is valid.

    `allowing`: the operator's settings, whose allow-lists spec.pod must keep within.
    """
    parsed = parse_spec(spec if isinstance(spec, dict) else {})
    if isinstance(parsed, Resolution):
        return list(parsed.field_errors) or [parsed.message]
    return pod_addition_problems(parsed.pod, allowing) if allowing is not None else []


def install(
    registry: kopf.OperatorRegistry,
    settings: kopf.OperatorSettings,
    *,
    options: WebhookOptions,
    allowing: OperatorSettings | None = None,
) -> None:
    """Register the validating handler and serve it with kopf's webhook server."""
    settings.admission.server = kopf.WebhookServer(
        port=options.port, host=options.host, certfile=options.certfile, pkeyfile=options.keyfile
    )
    settings.admission.managed = options.managed_name

    @kopf.on.validate(GROUP, VERSION, "finetunejobs", registry=registry, id="validate-finetunejob")
    def validate_finetunejob(spec: kopf.Spec, **_: Any) -> None:
        problems = spec_problems(dict(spec), allowing=allowing)
        if problems:
            raise kopf.AdmissionError("invalid FineTuneJob: " + "; ".join(problems), code=422)
