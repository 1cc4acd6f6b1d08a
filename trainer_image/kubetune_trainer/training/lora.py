"""LoRA through peft: only the adapter trains, the base model stays frozen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ..contract import LoraConfig
from ..errors import InvalidInput
from ..peft_models import wrap_with_adapter

VISION_MODULES = ("vision_tower", "multi_modal_projector", "vision_model", "visual")
"""The image side of a multimodal causal LM (Gemma 3, Llama 3.2 Vision, Qwen2-VL): text training never runs it."""


def apply_lora(model: nn.Module, lora: LoraConfig) -> Any:
    """Wrap `model` in a peft model with adapters on `lora.target_modules` (`all-linear`: every linear of the language
    model but lm_head; a multimodal model's image side, which text never reaches, gets none)."""
    # peft takes seconds to import; full fine-tuning never needs it.
    from peft import LoraConfig as PeftLoraConfig  # noqa: PLC0415

    targets: str | list[str] = "all-linear" if lora.target_modules == ["all-linear"] else list(lora.target_modules)
    if isinstance(targets, list):
        _refuse_unmatched(model, targets)
    peft_config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        exclude_modules=_image_side(model),
        task_type="CAUSAL_LM",
        bias="none",
    )
    try:
        return wrap_with_adapter(model, peft_config)
    except ValueError as exc:
        if "lora_dropout" in str(exc):
            # peft adapts a mixture of experts' stacked expert weights as parameters, which takes no dropout.
            raise InvalidInput(
                f"lora.dropout {lora.dropout} cannot apply to this model's adapted layers {lora.target_modules}: {exc}",
                reason="LoraDropoutUnsupported",
                field="lora.dropout",
                hint="Set lora.dropout to 0, or lora.targetModules to the attention projections (q_proj, k_proj, "
                "v_proj, o_proj): a mixture of experts' stacked experts (all-linear adapts them) take no dropout.",
            ) from exc
        # peft's NoMatchingPeftModuleError is a ValueError naming the modules it could not find.
        raise InvalidInput(
            f"LoRA target modules {lora.target_modules} do not match this model: {exc}",
            reason="LoraTargetModulesNotFound",
            field="lora.targetModules",
            hint="Set lora.targetModules to module names of this architecture (e.g. q_proj, v_proj) or to all-linear.",
        ) from exc


def keep_adapter_inputs_as_they_come(model: nn.Module) -> None:
    """Stop peft casting each adapter's input to the adapter's dtype (fp32): under autocast the
    adapter then computes in the compute dtype and autograd keeps the (shared) bf16 input, not an
    fp32 copy of every adapted layer's input."""
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled"):
            setattr(module, "cast_input_dtype_enabled", False)  # noqa: B010 - peft's flag, not a module attribute mypy knows


def _refuse_unmatched(model: nn.Module, targets: list[str]) -> None:
    """Every listed module name must name a module: peft refuses a list only when none matches, so
    a misspelt name beside a correct one would quietly train fewer layers than the job says."""
    names = [name for name, _ in model.named_modules()]
    # peft's rule for a list: the module's full name is the target or ends with "." + target.
    unmatched = [t for t in targets if not any(name == t or name.endswith("." + t) for name in names)]
    if unmatched:
        leaves = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if _is_linear(module)})
        raise InvalidInput(
            f"LoRA target modules {unmatched} match no module of this model (its linear layers: {', '.join(leaves)})",
            reason="LoraTargetModulesNotFound",
            field="lora.targetModules",
            hint="Set lora.targetModules to module names of this architecture (e.g. q_proj, v_proj) or to all-linear.",
        )


def _image_side(model: nn.Module) -> str | None:
    """A regular expression over the module names of `model`'s image side (`VISION_MODULES`); None when it has none."""
    present = sorted({part for name, _ in model.named_modules() for part in name.split(".") if part in VISION_MODULES})
    return rf"(.*\.)?({'|'.join(present)})(\..*)?" if present else None


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear)


def unadapted_linears(model: nn.Module) -> list[str]:
    """The linear layers of a peft-wrapped `model`'s language model that have no adapter: the head and the image
    side (which all-linear leaves out on purpose) not counted.

    All-linear should leave none. peft 0.21 does on a mixture of experts whose stacked experts it adapts under
    their transformers 4 names (Qwen3-MoE, DeepSeek V3): it takes `gate_proj`, `up_proj` and `down_proj` for the
    experts, so a dense layer's MLP and a shared expert of those names stay frozen.
    """
    # peft is imported only by LoRA runs (seconds to import).
    from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: PLC0415

    inside_adapters = {
        id(sub) for module in model.modules() if isinstance(module, BaseTunerLayer) for sub in module.modules()
    }
    output_embeddings = getattr(model, "get_output_embeddings", None)
    head = output_embeddings() if callable(output_embeddings) else None
    return [
        name.removeprefix("base_model.model.")  # as the model names it, not peft's wrapper
        for name, module in model.named_modules()
        if _is_linear(module)
        and id(module) not in inside_adapters
        and module is not head
        and not any(part in VISION_MODULES for part in name.split("."))
    ]


def left_out_message(names: list[str] | tuple[str, ...]) -> str:
    """What a job is told when all-linear left linear layers frozen (`unadapted_linears`)."""
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return (
        f"lora.targetModules all-linear left {len(names)} linear layer(s) of the model without an adapter: {shown}. "
        "They train frozen (the known cause: peft adapts a mixture of experts' stacked experts under the names "
        "gate_proj, up_proj and down_proj, and so skips the dense MLPs and shared experts that bear them)"
    )


def point_adapter_at(folder: Path, *, repo: str, revision: str | None) -> None:
    """Name the base in `folder`'s adapter_config.json by repo and commit.

    peft records the local snapshot path it trained on; a user loading the adapter needs the repo.
    """
    path = folder / "adapter_config.json"
    adapter_config = json.loads(path.read_text(encoding="utf-8"))
    adapter_config["base_model_name_or_path"] = repo
    adapter_config["revision"] = revision
    path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True), encoding="utf-8")
