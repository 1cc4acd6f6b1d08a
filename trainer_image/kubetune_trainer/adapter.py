"""LoRA adapter repos as `fromHfModel`: the base they name, their own rules, and the merge.

An adapter repo (adapter_config.json + adapter_model.safetensors, no config.json) is trained
as the full model it describes: its base is fetched under the same model rules, the adapter is
merged into it with peft (`merge_and_unload`), and the merged model, saved to a work folder,
is what the trainer loads. Both commits are kept as lineage for the model card.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .model_rules import MODEL_FIELD, RuleOutcome, RuleStatus, is_pickle
from .peft_models import load_adapter

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")
_LINEAGE_FILE = "kubetune-lineage.json"


@dataclass(frozen=True)
class AdapterLineage:
    """Where a merged model came from: the adapter repo and the base it was merged into."""

    adapter_repo: str
    adapter_sha: str
    base_repo: str
    base_sha: str


def is_adapter_repo(files: Sequence[str]) -> bool:
    return ADAPTER_CONFIG in files and "config.json" not in files


def base_reference(adapter_config: Mapping[str, Any]) -> tuple[str | None, str]:
    """The base repo id the adapter names (None when it names a local path or nothing) and its revision."""
    base = adapter_config.get("base_model_name_or_path")
    revision = adapter_config.get("revision") or "main"
    if not isinstance(base, str) or not _REPO_ID.match(base):
        return None, str(revision)
    return base, str(revision)


def adapter_outcomes(adapter_config: Mapping[str, Any], files: Sequence[str], *, where: str) -> list[RuleOutcome]:
    """The adapter repo's own rules: a LoRA adapter, a hub base, safetensors weights."""
    outcomes: list[RuleOutcome] = []
    peft_type = adapter_config.get("peft_type")
    if peft_type == "LORA":
        outcomes.append(RuleOutcome(rule="adapter", status=RuleStatus.PASS, message="a LoRA adapter"))
    else:
        outcomes.append(
            _fail(
                "adapter",
                f"{where} is a {peft_type!s} adapter; kubetune merges LoRA adapters only",
                reason="UnsupportedAdapter",
            )
        )
    base, revision = base_reference(adapter_config)
    if base is None:
        shown = adapter_config.get("base_model_name_or_path")
        outcomes.append(
            _fail(
                "adapter-base",
                f"{where} adapter_config.json names its base as {shown!r}, not a hub repo id (ORG/NAME)",
                reason="AdapterBaseUnknown",
            )
        )
    else:
        outcomes.append(
            RuleOutcome(rule="adapter-base", status=RuleStatus.PASS, message=f"base model {base}@{revision}")
        )
    if ADAPTER_WEIGHTS in files:
        outcomes.append(RuleOutcome(rule="adapter-safetensors", status=RuleStatus.PASS, message=ADAPTER_WEIGHTS))
    else:
        pickles = [f for f in files if is_pickle(f)]
        found = f"only {', '.join(pickles)}" if pickles else "no adapter weights"
        outcomes.append(
            RuleOutcome(
                rule="adapter-safetensors",
                status=RuleStatus.FAIL,
                message=f"{where} has {found}; kubetune loads {ADAPTER_WEIGHTS} only, since pickles can run code",
                reason="NoSafetensorsWeights",
                hint=f"Save the adapter with peft's save_pretrained (it writes {ADAPTER_WEIGHTS}) and push it.",
                field=MODEL_FIELD,
            )
        )
    return outcomes


def _fail(rule: str, message: str, *, reason: str) -> RuleOutcome:
    return RuleOutcome(
        rule=rule,
        status=RuleStatus.FAIL,
        message=message,
        reason=reason,
        hint=f"Set {MODEL_FIELD} to a LoRA adapter whose adapter_config.json names its base as a hub repo "
        "(base_model_name_or_path: ORG/NAME), or to a full model repo.",
        field=MODEL_FIELD,
    )


def merge_adapter(*, base_path: Path, adapter_path: Path, output_dir: Path, lineage: AdapterLineage) -> Path:
    """Merge the adapter at `adapter_path` into the base at `base_path`; the merged model in `output_dir`.

    Complete or absent: written beside `output_dir` and renamed into place, so a retry after a
    crash never loads half a model; a finished merge of the same lineage is reused.
    """
    if _merged_lineage(output_dir) == lineage:
        return output_dir
    # peft takes seconds to import and only the merge needs it: the preflight and `kubetune check` never do.
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    partial = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    base = AutoModelForCausalLM.from_pretrained(base_path, trust_remote_code=False, use_safetensors=True, dtype="auto")
    with torch.no_grad():
        merged = load_adapter(base, adapter_path).merge_and_unload()
    merged.save_pretrained(partial)
    # Tokenizer and chat template: the base's, unless the adapter ships its own.
    for source in (base_path, adapter_path):
        for path in sorted(source.iterdir()):
            if path.is_file() and _is_tokenizer_file(path.name):
                shutil.copyfile(path, partial / path.name)
    (partial / _LINEAGE_FILE).write_text(json.dumps(asdict(lineage), indent=2), encoding="utf-8")
    shutil.rmtree(output_dir, ignore_errors=True)
    partial.rename(output_dir)
    return output_dir


def _is_tokenizer_file(name: str) -> bool:
    weights_or_model = name.endswith(".safetensors") or is_pickle(name) or name in _MODEL_FILES
    return not weights_or_model and name not in (ADAPTER_CONFIG, "README.md", ".gitattributes")


def _merged_lineage(output_dir: Path) -> AdapterLineage | None:
    try:
        recorded = json.loads((output_dir / _LINEAGE_FILE).read_text(encoding="utf-8"))
        return AdapterLineage(**recorded)
    except (OSError, ValueError, TypeError):
        return None
