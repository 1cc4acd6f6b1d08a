"""docs/scaling.md's table is what the GPU planner computes today, and its arithmetic is the doc's."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from kubetune_operator.resolve.catalog import load_catalog

from ..conftest import REPO


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scaling_table", REPO / "bench" / "scaling_table.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_doc_table_is_the_planners_table() -> None:
    script = _script()
    doc = (REPO / "docs" / "scaling.md").read_text()
    assert script.doc_table(doc) == script.table(), "run python bench/scaling_table.py --write"


def test_every_catalog_template_has_a_row_for_each_way_it_trains() -> None:
    table = _script().table()
    for template in load_catalog():
        rows = [line for line in table.splitlines() if line.startswith(f"| {template.name} |")]
        kinds = (template.spec.limits.lora_training is not None) + (template.spec.limits.full_training is not None)
        assert len(rows) == kinds, template.name


def test_the_llama_2_7b_row_is_the_arithmetic_the_doc_shows() -> None:
    row = next(line for line in _script().table().splitlines() if line.startswith("| llama-2-7b-chat | 6.74B | full |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    gpus = int(cells[5].split(" x ")[0])
    assert gpus == 2
    # 14 bytes a parameter stored (bf16 weights, fp32 m, v and master).
    assert cells[9] == f"{6_738_415_616 * 14 / 1e9:.1f}" == "94.3"
    # The measured full fine-tune MFU (35.8%, one H200) x 989 TFLOP/s x GPUs / 6N.
    assert cells[10] == "35.8%"
    assert cells[11] == f"{0.358 * 989e12 * gpus / (6 * 6_738_415_616):,.0f}" == "17,515"
