"""Output verification: the folder about to be uploaded must reproduce the model that was trained.

Between Saving and Upload, rank 0 loads the saved folder back from disk the way a user will
(`AutoModelForCausalLM`, safetensors only, no remote code, local files only; for an unmerged
LoRA adapter, `PeftModel` on the base that trained) and checks:

- loss: the mean token loss on a few examples (validation, else training) is within
  `loss_tolerance` of the loss the in-memory model computed on the same examples;
- tokenizer: the saved tokenizer gives the same token ids for sample texts (the examples as
  text, and a fixed string with punctuation, digits and non-ASCII letters);
- chat template: the saved tokenizer renders a fixed conversation to the same prompt.

Any difference is a `CheckpointInvalid` (error class ValueError), reason
`OutputVerificationFailed`, naming what differed; the stage fails, so Upload never runs and the
destination is left as it was.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from .data.packing import collate_padded
from .data.preference_pairs import TokenizedPair
from .data.tokenization import TokenizedExample
from .errors import CheckpointInvalid
from .peft_models import load_adapter
from .training.loss import summed_label_loss

REASON = "OutputVerificationFailed"
VERIFY_EXAMPLES = 4
"""Examples scored twice: enough to catch a wrong or missing tensor, cheap next to a training step."""

FP32_LOSS_TOLERANCE = 1e-4
"""Relative loss difference allowed when the weights are saved in fp32 and computed without autocast.

Reloading fp32 safetensors gives the same bits and, on the CPU that trained, the same loss
(difference 0 on the tiny models); merging a LoRA adapter moves it by about 3e-8 relative; an
accelerator sums in another order than the CPU that reloads, around 1e-6 relative. Zeroing one
MLP matrix of the tiny Llama moves the loss by 2e-3 relative, twenty times this bound.
"""

LOW_PRECISION_LOSS_TOLERANCE = 2e-2
"""Relative loss difference allowed for bf16/fp16 weights or fp16 autocast.

bf16 keeps 8 significant bits (a relative step of 2**-8, about 4e-3, per rounding); the reload
runs on the CPU while training computed on the accelerator, and merging an adapter into bf16
weights rounds every merged weight once more. 2e-2 covers those roundings and still fails a
model whose weights were not the trained ones.
"""

SAMPLE_TEXT = "Kubetune checks 3 things: weights, tokens & templates. Ünïcödé, 日本語, emoji 🙂!\n\tEnd."
SAMPLE_CONVERSATION = [
    {"role": "user", "content": "What does the output verification compare?"},
    {"role": "assistant", "content": "The loss, the token ids and this prompt."},
    {"role": "user", "content": "Thanks."},
]


@dataclass(frozen=True)
class OutputCheck:
    """What the verification measured; `loss_difference` goes into the metrics and the model card."""

    examples: int
    reference_loss: float
    reloaded_loss: float
    tolerance: float

    @property
    def loss_difference(self) -> float:
        return abs(self.reloaded_loss - self.reference_loss)


def verification_examples(
    validation: Sequence[TokenizedExample | TokenizedPair], training: Sequence[TokenizedExample | TokenizedPair]
) -> list[TokenizedExample]:
    """The first few examples with a token to score: validation ones when there are any.

    Preference pairs (trainingMethod dpo) are scored by their preferred sequence.
    """
    pool = [_scored(example) for example in (validation if validation else training)]
    return [example for example in pool if example.label_tokens > 0][:VERIFY_EXAMPLES]


def _scored(example: TokenizedExample | TokenizedPair) -> TokenizedExample:
    return example.chosen if isinstance(example, TokenizedPair) else example


def loss_tolerance(weight_dtype: torch.dtype, *, autocast_dtype: torch.dtype | None) -> float:
    """The relative loss difference allowed for weights held in `weight_dtype` (see the constants)."""
    if weight_dtype is torch.float32 and autocast_dtype is None:
        return FP32_LOSS_TOLERANCE
    return LOW_PRECISION_LOSS_TOLERANCE


def mean_loss(
    model: nn.Module,
    examples: Sequence[TokenizedExample],
    *,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> float:
    """Mean token loss of `model` over `examples`, one example per forward pass (no padding to differ).

    Under FSDP every forward is a collective: every rank must call this with the same examples.
    """
    was_training = model.training
    model.eval()
    summed, tokens = 0.0, 0
    with torch.no_grad():
        for example in examples:
            batch = collate_padded([example], pad_token_id=0).to(device)  # a single example: nothing is padded
            with autocast():
                summed += float(summed_label_loss(model, batch).double())
            tokens += batch.label_tokens
    model.train(was_training)
    return summed / tokens if tokens else math.nan


def verify_saved_output(
    folder: Path,
    *,
    reference_loss: float,
    examples: Sequence[TokenizedExample],
    tokenizer: Any,
    weight_dtype: torch.dtype,
    tolerance: float,
    adapter_base: Path | None = None,
) -> OutputCheck:
    """Check `folder` against the in-memory model's `reference_loss` and `tokenizer`; raise on a difference.

    `adapter_base` is the local snapshot the adapter was trained on when `folder` holds an
    unmerged LoRA adapter; None when it holds a full model.
    """
    check_tokenizer(folder, tokenizer=tokenizer, examples=examples)
    model = _reload(folder, weight_dtype=weight_dtype, adapter_base=adapter_base)
    try:
        reloaded = mean_loss(model, examples, device=torch.device("cpu"))
    finally:
        del model
        gc.collect()
    return compare_losses(
        folder, reference_loss=reference_loss, reloaded_loss=reloaded, examples=len(examples), tolerance=tolerance
    )


def compare_losses(
    folder: Path, *, reference_loss: float, reloaded_loss: float, examples: int, tolerance: float
) -> OutputCheck:
    """The check of the reloaded weights' loss against the trained one; raises when it is off."""
    check = OutputCheck(
        examples=examples, reference_loss=reference_loss, reloaded_loss=reloaded_loss, tolerance=tolerance
    )
    allowed = tolerance * max(1.0, abs(reference_loss))
    if not math.isfinite(reloaded_loss) or not check.loss_difference <= allowed:
        raise output_invalid(
            f"the model reloaded from {folder.name} has loss {reloaded_loss:.6f} on {examples} example(s) where "
            f"the trained model had {reference_loss:.6f} (difference {check.loss_difference:.2e}, allowed "
            f"{allowed:.2e}): the saved weights are not the trained ones"
        )
    return check


def _reload(folder: Path, *, weight_dtype: torch.dtype, adapter_base: Path | None) -> Any:
    """The saved model as a user loads it, on the CPU (no second copy on the accelerator)."""
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(adapter_base or folder),
            trust_remote_code=False,
            use_safetensors=True,
            local_files_only=True,
            dtype=weight_dtype,
        )
        if adapter_base is not None:
            model = load_adapter(model, folder, local_files_only=True)
    except Exception as unloadable:  # any reason it cannot load is a broken output
        raise output_invalid(
            f"the saved output {folder.name} cannot be loaded back: {type(unloadable).__name__}: {unloadable}"
        ) from unloadable
    return model


def check_tokenizer(folder: Path, *, tokenizer: Any, examples: Sequence[TokenizedExample]) -> None:
    try:
        reloaded = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    except Exception as unloadable:
        raise output_invalid(
            f"the saved tokenizer in {folder.name} cannot be loaded back: {type(unloadable).__name__}: {unloadable}"
        ) from unloadable
    texts = [SAMPLE_TEXT, *(tokenizer.decode(example.input_ids) for example in examples)]
    for index, text in enumerate(texts):
        expected, got = _ids(tokenizer, text), _ids(reloaded, text)
        if expected != got:
            first = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b), None)
            where = f"first at token {first}" if first is not None else f"{len(expected)} vs {len(got)} tokens"
            which = "the sample text" if index == 0 else f"verification example {index}"
            raise output_invalid(f"the saved tokenizer encodes {which} differently from the trained one ({where})")
    expected_prompt, got_prompt = _rendered(tokenizer), _rendered(reloaded)
    if expected_prompt != got_prompt:
        raise output_invalid(
            "the saved chat template renders a conversation differently from the one training used: "
            f"expected {expected_prompt[:120]!r}, got {got_prompt[:120]!r}"
        )


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def _rendered(tokenizer: Any) -> str:
    """The sample conversation as a prompt; a template that refuses it must refuse it the same way."""
    if not tokenizer.chat_template:
        return "<no chat template>"
    try:
        return str(tokenizer.apply_chat_template(SAMPLE_CONVERSATION, tokenize=False, add_generation_prompt=True))
    except Exception as refused:  # jinja raising is part of a template's behaviour
        return f"<refused: {type(refused).__name__}: {refused}>"


def output_invalid(message: str) -> CheckpointInvalid:
    return CheckpointInvalid(
        f"output verification failed: {message}. Nothing was uploaded.",
        reason=REASON,
        hint="Check free space and health of the volume under runtime.workDir (the output is written there "
        "before upload), then run the job again; if it fails the same way, report it with the job UID.",
    )
