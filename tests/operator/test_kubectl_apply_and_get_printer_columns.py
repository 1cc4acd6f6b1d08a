"""The system kubectl against the emulator with the operator running: apply the examples, read the printer columns."""

from __future__ import annotations

from kubetune_sandbox.emulator import ApiEmulator

from ..conftest import EXAMPLES_DIR
from ..kubectl import kubectl
from .cluster_actors import wait_for
from .conftest import RunningOperator, status_of


async def test_kubectl_apply_then_get_shows_phase_stage_progress_model_error_age(
    cluster: ApiEmulator, operator: RunningOperator
) -> None:
    code, output = await kubectl(
        cluster.url, "apply", "--validate=false", "-n", "ml", "-f", str(EXAMPLES_DIR / "byom-lora.yaml")
    )
    assert code == 0, output
    assert "finetunejob.kubetune.dev/support-bot created" in output
    await wait_for(lambda: status_of(cluster, "support-bot").get("phase") == "Validating", what="phase Validating")

    code, output = await kubectl(cluster.url, "get", "ftj", "-n", "ml")
    assert code == 0, output
    header, row = output.splitlines()[:2]
    assert header.split() == ["NAME", "PHASE", "STAGE", "PROGRESS", "MODEL", "ERROR", "AGE"]
    assert row.split()[:2] == ["support-bot", "Validating"]

    code, output = await kubectl(cluster.url, "get", "finetunejobs", "-A", "-o", "wide")
    assert code == 0, output
    assert output.splitlines()[0].split()[-3:] == ["HF-MODEL", "REASON", "ATTEMPT"]


async def test_kubectl_apply_of_every_example_is_accepted(cluster: ApiEmulator, operator: RunningOperator) -> None:
    for example in sorted(EXAMPLES_DIR.glob("*.yaml")):
        code, output = await kubectl(cluster.url, "apply", "--validate=false", "-f", str(example))
        assert code == 0, (example.name, output)
    code, output = await kubectl(cluster.url, "get", "bmt", "smollm2-on-l4", "-o", "name")
    assert (code, output.strip()) == (0, "basemodeltemplate.kubetune.dev/smollm2-on-l4")
    code, output = await kubectl(cluster.url, "get", "ftj", "-A", "--no-headers")
    assert code == 0, output
    assert len(output.splitlines()) == len([p for p in EXAMPLES_DIR.glob("*.yaml") if "FineTuneJob" in p.read_text()])


async def test_kubectl_shows_the_schema_error_for_an_invalid_job(cluster: ApiEmulator) -> None:
    manifest = (EXAMPLES_DIR / "quickstart.yaml").read_text().replace("model: auto", "model: ''")
    code, output = await kubectl(cluster.url, "apply", "--validate=false", "-n", "ml", "-f", "-", stdin=manifest)
    assert code != 0
    assert 'The FineTuneJob "quickstart" is invalid' in output
    assert "spec.model" in output
