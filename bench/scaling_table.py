"""The table of docs/scaling.md: every catalog template's GPU plan, checkpoint size and expected tokens/s.

    python bench/scaling_table.py            # print the table (Markdown)
    python bench/scaling_table.py --check    # exit 1 when docs/scaling.md's table differs from it
    python bench/scaling_table.py --write    # rewrite the table in docs/scaling.md

Pure arithmetic, no GPU: the plan is the operator's GPU planner (kubetune_operator.resolve.gpu_plan)
at each template's defaults (its maxSeqLength, LoRA at its default rank, full training where the
template offers it). Tokens/s = MFU x peak x GPUs / FLOPs per token, with the single-GPU MFU
measured on one H200 (docs/performance.md, issue 13: a Llama-3.2-1B shape at 2,048 tokens) and
FLOPs per token 6N (PaLM's model-FLOPs definition, the one the trainer's reported MFU uses);
scaling across GPUs is assumed perfect (not measured).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kubetune_operator.api.status import GpuPlan
from kubetune_operator.api.template import BaseModelTemplateSpec
from kubetune_operator.resolve.catalog import load_catalog
from kubetune_operator.resolve.gpu_plan import GB, model_shape, template_plans
from kubetune_trainer.memory_model import TrainingSetup

DOC = Path(__file__).resolve().parent.parent / "docs" / "scaling.md"
BEGIN = "<!-- scaling-table:begin (bench/scaling_table.py --write) -->"
END = "<!-- scaling-table:end -->"
MEASURED_MFU_FULL = 0.358
"""Full fine-tune, eager, one H200 (docs/performance.md, the gpu-bench yardstick, 2026-12-04)."""
MEASURED_MFU_LORA = 0.389
"""LoRA r 64 all-linear, eager, same run."""
MEASURED_MFU_COMPILED = 0.433
"""Full fine-tune with compile on (bench/gpu_throughput.py, same GPU): templates with `compile: true`."""
PEAK_FLOPS_OF_PRODUCT = {"NVIDIA-H100-80GB-HBM3": 989e12, "NVIDIA-H200": 989e12}
"""Dense bf16 tensor-core peak (NVIDIA datasheets), the figure the trainer's gpu_stats uses too."""
DEFAULT_PEAK_FLOPS = 989e12
FLOPS_PER_PARAMETER_TOKEN = 6


def checkpoint_bytes(spec: BaseModelTemplateSpec, plan_name: str) -> int:
    """What one checkpoint stores, every rank's shards together.

    Full: the weights at their dtype plus AdamW's state (m, v and the master copy or compensation).
    LoRA: the adapters (fp32) and their m and v; the frozen base is not in the checkpoint.
    """
    shape = model_shape(spec.parameters, template=spec.architecture.shape, template_parameters=spec.parameters)
    lora_rank = int(plan_name.split("=")[1]) if plan_name.startswith("LoRA") else None
    setup = TrainingSetup.for_run(
        shape,
        precision=spec.training.precision.value,
        master_weights=spec.training.master_weights.value,
        lora_rank=lora_rank,
    )
    if lora_rank is not None:
        return setup.trainable_parameters * (4 + setup.optimizer_bytes)
    return spec.parameters * (setup.weight_bytes + setup.optimizer_bytes)


def mfu(spec: BaseModelTemplateSpec, plan_name: str) -> float:
    """The measured single-GPU MFU this row uses: compiled where the template compiles, else LoRA's or full's."""
    if spec.training.compile:
        return MEASURED_MFU_COMPILED
    return MEASURED_MFU_LORA if plan_name.startswith("LoRA") else MEASURED_MFU_FULL


def tokens_per_second(spec: BaseModelTemplateSpec, plan: GpuPlan, plan_name: str) -> float:
    """MFU x peak x GPUs / (6 x N): the job's trained tokens per second at the measured single-GPU MFU, N the
    parameters a token computes with (a mixture of experts' active ones), as the trainer's MFU counts them."""
    peak = PEAK_FLOPS_OF_PRODUCT.get(spec.resources.gpu_product or "", DEFAULT_PEAK_FLOPS)
    shape = model_shape(spec.parameters, template=spec.architecture.shape, template_parameters=spec.parameters)
    return mfu(spec, plan_name) * peak * plan.gpus / (FLOPS_PER_PARAMETER_TOKEN * shape.active_parameters)


def table() -> str:
    """The Markdown table, one row per template and training kind."""
    rows = [
        "| template | params | training | seq | max GPUs | planned GPUs x nodes | activation ckpt | "
        "GiB per GPU (of usable) | fits | checkpoint GB | MFU | tokens/s (job) |",
        "| --- | ---: | --- | ---: | ---: | --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for template in load_catalog():
        spec = template.spec
        for how, plan in template_plans(spec):
            rows.append(
                f"| {template.name} | {spec.parameters / 1e9:.2f}B | {how} | {spec.max_seq_length} | {plan.max_gpus} | "
                f"{plan.gpus} x {plan.nodes} | {'on' if plan.gradient_checkpointing else 'off'} | "
                f"{plan.per_gpu_bytes / 1024**3:.1f} ({plan.usable_bytes / 1024**3:.1f}) | "
                f"{'yes' if plan.fits else 'no'} | {checkpoint_bytes(spec, how) / GB:.1f} | {mfu(spec, how):.1%} | "
                f"{tokens_per_second(spec, plan, how):,.0f} |"
            )
    return "\n".join(rows)


def doc_table(text: str) -> str:
    """The table between the markers of docs/scaling.md."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="exit 1 when docs/scaling.md's table differs")
    action.add_argument("--write", action="store_true", help="rewrite the table in docs/scaling.md")
    args = parser.parse_args()
    current = table()
    if args.check:
        if doc_table(DOC.read_text()) != current:
            print(f"{DOC} is out of date: run python bench/scaling_table.py --write", file=sys.stderr)
            return 1
        return 0
    if args.write:
        text = DOC.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        DOC.write_text(f"{text[:start]}\n{current}\n{text[end:]}")
        return 0
    print(current)
    return 0


if __name__ == "__main__":
    sys.exit(main())
