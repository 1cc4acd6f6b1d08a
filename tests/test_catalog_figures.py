"""The template catalog's model figures are the real architectures' figures.

Every BaseModelTemplate in ``charts/kubetune/files/templates`` states the parameter
count and the maximum sequence length of its ``spec.hfModel``, and the
``model_type``/``architectures`` that identify it. Those figures were written by hand,
so this module proves them: for each catalog file it loads a stored copy of the
model's own Hugging Face ``config.json`` (``tests/data/model_configs/<stem>.json``,
the real keys and values, nothing added to make a number fit), builds the model on
the ``meta`` device with transformers (shapes only, no memory, no download), counts
its unique parameters (tied weights once) and asserts that

* the count equals ``spec.parameters`` exactly,
* ``max_position_embeddings`` (the text model's, for a multimodal config) equals
  ``spec.maxSeqLength``,
* ``model_type`` is in ``spec.architecture.modelTypes`` and ``architectures[0]`` is in
  ``spec.architecture.architectures``,

and that every catalog file has a stored config and every stored config a catalog file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
import torch
import transformers
import yaml
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

REPO_ROOT = Path(__file__).resolve().parent.parent
CATALOG_DIR = REPO_ROOT / "charts" / "kubetune" / "files" / "templates"
CONFIG_DIR = Path(__file__).resolve().parent / "data" / "model_configs"

CATALOG_FILES = sorted(CATALOG_DIR.glob("*.yaml"))
CATALOG_IDS = [p.stem for p in CATALOG_FILES]


def _load_spec(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    assert doc["kind"] == "BaseModelTemplate", path
    spec: dict[str, Any] = doc["spec"]
    return spec


def _load_config(stem: str) -> PretrainedConfig:
    text = (CONFIG_DIR / f"{stem}.json").read_text(encoding="utf-8")
    raw: dict[str, Any] = json.loads(text)
    config: PretrainedConfig = AutoConfig.for_model(**raw)
    return config


def _build_on_meta(config: PretrainedConfig) -> PreTrainedModel:
    """Instantiate the checkpoint's model class on the meta device (shapes only).

    ``AutoModelForCausalLM`` is used when it resolves to the class the config's
    ``architectures`` names; otherwise (a causal-LM mapping that picks a text-only
    class for a multimodal checkpoint) the named class is built, since the
    checkpoint's weights are that class's.
    """
    assert config.architectures, "config.json must name its architectures"
    wanted = config.architectures[0]
    auto_cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    auto_name = getattr(auto_cls, "__name__", None)
    with torch.device("meta"):
        if auto_name == wanted:
            from_config = AutoModelForCausalLM.from_config
            built = from_config(config)  # type: ignore[no-untyped-call]
            model = cast(PreTrainedModel, built)
        else:
            model = cast(PreTrainedModel, getattr(transformers, wanted)(config))
    assert type(model).__name__ == wanted
    return model


def _count_parameters(config: PretrainedConfig) -> int:
    model = _build_on_meta(config)
    # model.parameters() yields a tied tensor once, so this counts unique parameters.
    return sum(p.numel() for p in model.parameters())


def _max_position_embeddings(config: PretrainedConfig) -> int:
    text_config = config.get_text_config()
    value: int = text_config.max_position_embeddings
    return value


def test_every_catalog_file_has_a_config() -> None:
    catalog = {p.stem for p in CATALOG_FILES}
    configs = {p.stem for p in CONFIG_DIR.glob("*.json")}
    assert catalog, f"no catalog files in {CATALOG_DIR}"
    assert configs == catalog


@pytest.mark.parametrize("catalog_file", CATALOG_FILES, ids=CATALOG_IDS)
def test_catalog_figures_match_architecture(catalog_file: Path) -> None:
    spec = _load_spec(catalog_file)
    config = _load_config(catalog_file.stem)
    architecture = spec["architecture"]

    assert config.model_type in architecture["modelTypes"]
    assert config.architectures is not None
    assert config.architectures[0] in architecture["architectures"]
    assert _max_position_embeddings(config) == spec["maxSeqLength"]
    assert _count_parameters(config) == spec["parameters"], spec["hfModel"]
