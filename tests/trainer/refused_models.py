"""Model repos kubetune must refuse, each built as a folder that can be published into a cache or a mock hub.

Only config.json and the file list matter to the rules, so every case is a real config.json
(shaped like the hub model it stands for) plus the weight file names its repo would carry.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune_trainer.hf_cache import content_commit

LLAMA_405B: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 16384,
    "intermediate_size": 53248,
    "num_hidden_layers": 126,
    "num_attention_heads": 128,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "transformers_version": "4.42.3",
}
"""meta-llama/Llama-3.1-405B's shape: 405,853,388,800 parameters."""

BERT_MLM: dict[str, Any] = {
    "architectures": ["BertForMaskedLM"],
    "model_type": "bert",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "transformers_version": "4.6.0.dev0",
}
"""google-bert/bert-base-uncased."""

REMOTE_CODE: dict[str, Any] = {
    "architectures": ["TinyStarForCausalLM"],
    "model_type": "tinystar",
    "auto_map": {
        "AutoConfig": "configuration_tinystar.TinyStarConfig",
        "AutoModelForCausalLM": "modeling_tinystar.TinyStarForCausalLM",
    },
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "vocab_size": 768,
    "transformers_version": "4.44.0",
}
"""A custom architecture shipped as Python in the repo (trust_remote_code models)."""


@dataclass(frozen=True)
class RefusedCase:
    name: str
    repo: str
    reason: str
    spec_field: str
    config: dict[str, Any] | None
    files: dict[str, bytes] = field(default_factory=dict)
    words: tuple[str, ...] = ()
    """What the failure message must mention."""


SAFETENSORS = "model.safetensors"
FAKE_PICKLE = b"\x80\x04not loaded, never downloaded"

REFUSED = (
    RefusedCase(
        "remote-code",
        "bad-org/remote-code",
        "RemoteCodeRefused",
        "spec.fromHfModel",
        REMOTE_CODE,
        {"modeling_tinystar.py": b"raise SystemExit('remote code ran')\n"},
        words=("auto_map", "remote code"),
    ),
    RefusedCase(
        "bin-only",
        "bad-org/bin-only",
        "NoSafetensorsWeights",
        "spec.fromHfModel",
        None,
        {"pytorch_model.bin": FAKE_PICKLE},
        words=("pytorch_model.bin", ".safetensors"),
    ),
    RefusedCase(
        "bert-mlm", "bad-org/bert-mlm", "NotCausalLM", "spec.fromHfModel", BERT_MLM, words=("BertForMaskedLM",)
    ),
    RefusedCase(
        "llama-405b", "bad-org/llama-405b", "ModelTooLarge", "spec.fromHfModel", LLAMA_405B, words=("406B", "100B")
    ),
    RefusedCase(
        "too-new",
        "bad-org/too-new",
        "TransformersTooOld",
        "spec.model",
        None,
        words=("99.0.0", "transformersCeiling"),
    ),
)


def build_case(case: RefusedCase, *, tiny_snapshot: Path, into: Path) -> Path:
    """The repo folder of `case`: its config (the tiny model's where the case keeps it) and files."""
    folder = into / case.name
    folder.mkdir(parents=True)
    config = case.config or json.loads((tiny_snapshot / "config.json").read_text())
    if case.name == "too-new":
        config = {**config, "transformers_version": "99.0.0"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    if case.name != "bin-only":
        shutil.copyfile(tiny_snapshot / SAFETENSORS, folder / SAFETENSORS)
    for name, data in case.files.items():
        (folder / name).write_bytes(data)
    return folder


def commit_of(folder: Path) -> str:
    return content_commit(folder)
