"""Every manifest in examples/ is accepted by the CRD schema and by the pydantic models."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubetune_operator.api.errors import validate
from kubetune_operator.api.resources import BaseModelTemplate, FineTuneJob

from .conftest import EXAMPLES_DIR, CrdValidator

EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))


def test_there_are_examples() -> None:
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in EXAMPLES}
    assert kinds == {"FineTuneJob", "BaseModelTemplate"}
    assert (EXAMPLES_DIR / "quickstart.yaml").exists()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path: Path, finetunejob_schema: CrdValidator, template_schema: CrdValidator) -> None:
    document = yaml.safe_load(path.read_text())
    if document["kind"] == "FineTuneJob":
        assert finetunejob_schema.errors(document) == []
        job = validate(FineTuneJob, document, kind="FineTuneJob")
        assert job.metadata.name == document["metadata"]["name"]
    else:
        assert template_schema.errors(document) == []
        template = validate(BaseModelTemplate, document, kind="BaseModelTemplate")
        assert template.name == document["metadata"]["name"]
