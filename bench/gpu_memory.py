"""kubetune's loss, memory plan, master weights and LoRA on one CUDA GPU, against what they replace.

    PYTHONPATH=operator:trainer_image python bench/gpu_memory.py [--tokens 8192] [--layers 16]

A random Llama-3.2-1B-shaped model (hidden 2048, 16 layers, 32 heads, 8 KV heads, vocab
128,256, tied) in bf16, one row of `--tokens` tokens (causal, no packing):

1. the LM head + cross-entropy on 16,384 positions: plain (fp32 logits of every position) against
   `training.loss` in chunks: loss and gradients compared, peak memory and time of each;
2. one training step (forward, backward, optimizer) with the trainer's loss and optimizer: full
   fine-tuning with each master-weights policy, and LoRA (r 64, all-linear, bf16 autocast);
   measured peak allocated memory against `memory_model.estimate` for the same setup;
3. the token budget `memory_model.plan_token_budget` picks from the free memory.

Prints one line per measurement; nothing is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "trainer_image"))

import torch  # noqa: E402
from synthetic import random_llama  # noqa: E402
from torch.nn import functional  # noqa: E402

from kubetune_trainer.contract import LoraConfig, MasterWeights  # noqa: E402
from kubetune_trainer.data.packing import ModelBatch  # noqa: E402
from kubetune_trainer.memory_model import GIB, ModelShape, TrainingSetup, estimate, plan_token_budget  # noqa: E402
from kubetune_trainer.training.lean_layers import make_layers_lean  # noqa: E402
from kubetune_trainer.training.lora import apply_lora, keep_adapter_inputs_as_they_come  # noqa: E402
from kubetune_trainer.training.lora_fused import fuse_lora_updates  # noqa: E402
from kubetune_trainer.training.loss import summed_label_loss  # noqa: E402
from kubetune_trainer.training.optim import build_optimizer  # noqa: E402

CONFIG: dict[str, Any] = {
    "hidden_size": 2048, "intermediate_size": 8192, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": True, "max_position_embeddings": 131072,
}  # fmt: skip


DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
"""A CPU runs the same code on a small model (--layers 1 --tokens 256 --loss-tokens 512), memory figures 0."""


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def _reset_peak() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _allocated() -> int:
    return torch.cuda.memory_allocated() if DEVICE.type == "cuda" else 0


def _peak() -> int:
    return torch.cuda.max_memory_allocated() if DEVICE.type == "cuda" else 0


def _free() -> int:
    return torch.cuda.mem_get_info()[0] if DEVICE.type == "cuda" else 80 * GIB


VOCAB = [128256]


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def head_and_loss(tokens: int) -> None:
    """LM head + CE on `tokens` positions: plain fp32 logits against the chunked loss."""
    device = DEVICE
    torch.manual_seed(0)
    hidden = torch.randn(tokens, 2048, device=device, dtype=torch.bfloat16, requires_grad=True)
    head = torch.nn.Linear(2048, VOCAB[0], bias=False, device=device, dtype=torch.bfloat16)
    torch.nn.init.normal_(head.weight, std=0.02)
    targets = torch.randint(0, VOCAB[0], (tokens,), device=device)

    class Head(torch.nn.Module):
        """A causal LM of one linear: the decoder is the identity on given hidden states."""

        def __init__(self) -> None:
            super().__init__()
            self.decoder = _Identity()
            self.lm_head = head
            self.config = type("C", (), {"vocab_size": VOCAB[0]})()

        def get_output_embeddings(self) -> torch.nn.Module:
            return self.lm_head

        def get_decoder(self) -> torch.nn.Module:
            return self.decoder

        def forward(self, input_ids: torch.Tensor, logits_to_keep: torch.Tensor, **_: Any) -> Any:
            states = self.decoder(hidden.unsqueeze(0))
            return type("O", (), {"logits": self.lm_head(states[:, logits_to_keep])})()

    labels = torch.cat([torch.full((1,), -100, device=device), targets]).unsqueeze(0)[:, :tokens]
    batch = ModelBatch(
        input_ids=torch.zeros(1, tokens, dtype=torch.long, device=device), labels=labels, position_ids=None,
        attention_mask=None, examples=1, tokens=tokens, label_tokens=tokens - 1,
    )  # fmt: skip
    results = {}
    for name in ("plain", "chunked"):
        hidden.grad = None
        head.weight.grad = None
        _sync()
        _reset_peak()
        base = _allocated()
        started = time.perf_counter()
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            if name == "plain":
                logits = head(hidden[:-1]).float()
                loss = functional.cross_entropy(logits, labels[0, 1:], ignore_index=-100, reduction="sum")
            else:
                loss = summed_label_loss(Head(), batch)
        loss.backward()
        _sync()
        seconds = time.perf_counter() - started
        results[name] = (loss.detach().float(), hidden.grad.float().clone(), head.weight.grad.float().clone())
        peak = _peak() - base
        print(f"loss {name:8s} {tokens} tokens x {VOCAB[0]}: {seconds * 1000:7.1f} ms, peak {_mib(peak)}", flush=True)
        del loss
    (pl, ph, pw), (cl, ch, cw) = results["plain"], results["chunked"]
    print(
        f"loss chunked vs plain: loss rel diff {float((cl - pl).abs() / pl.abs()):.2e}, hidden grad max rel "
        f"{float((ch - ph).abs().max() / ph.abs().max()):.2e}, head grad max rel "
        f"{float((cw - pw).abs().max() / pw.abs().max()):.2e}",
        flush=True,
    )


class _Identity(torch.nn.Module):
    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return states


def training_step(*, layers: int, tokens: int, policy: str) -> None:
    """One step of the trainer's loss and optimizer; measured peak against the memory model."""
    device = DEVICE
    model: Any = random_llama(
        seed=0,
        device=device.type,
        dtype=torch.bfloat16,
        attn_implementation="sdpa",
        **CONFIG,
        num_hidden_layers=layers,
        use_cache=False,
    )
    shape = ModelShape.from_config(model.config.to_dict(), parameters=sum(p.numel() for p in model.parameters()))
    make_layers_lean(model)  # as Initialization does: the memory model counts the lean norms and MLPs
    lora = policy == "lora"
    if lora:
        model = apply_lora(model, LoraConfig(r=64, alpha=128, dropout=0.0, target_modules=["all-linear"], merge=False))
        fuse_lora_updates(model)
        keep_adapter_inputs_as_they_come(model)
        setup = TrainingSetup.for_run(shape, lora_rank=64)
        master = MasterWeights.FP32
    else:
        master = MasterWeights(policy)
        setup = TrainingSetup.for_run(shape, master_weights=policy)
    optimizer = build_optimizer(model, learning_rate=1e-5, weight_decay=0.0, master_weights=master)
    ids = torch.randint(0, VOCAB[0], (1, tokens), device=device)
    batch = ModelBatch(
        input_ids=ids, labels=ids, position_ids=None, attention_mask=None, examples=1, tokens=tokens,
        label_tokens=tokens - 1,
    )  # fmt: skip
    _sync()
    weights = _allocated()
    free_before = _free()
    _reset_peak()
    times = []
    for _ in range(3):
        started = time.perf_counter()
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            loss = summed_label_loss(model, batch) / batch.label_tokens
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync()
        times.append(time.perf_counter() - started)
    peak = _peak()
    predicted = estimate(shape, setup, micro_batch_tokens=tokens)
    plan = plan_token_budget(shape, setup, free_bytes=free_before, max_seq_length=2048)
    print(
        f"step {policy:17s} {tokens} tok: {min(times) * 1000:7.1f} ms, {tokens / min(times):9,.0f} tok/s; peak "
        f"{peak / GIB:6.2f} GiB (weights {weights / GIB:.2f}); model {predicted.total / GIB:6.2f} GiB (static "
        f"{predicted.static / GIB:.2f}, activations {predicted.activations / GIB:.2f}, loss chunk "
        f"{predicted.loss_chunk / GIB:.2f}); plan at {free_before / GIB:.0f} GiB free: {plan.token_budget} "
        f"({plan.limited_by})",
        flush=True,
    )
    del model, optimizer, loss
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--loss-tokens", type=int, default=16384)
    parser.add_argument("--policies", default="fp32,bf16-compensated,bf16,lora")
    parser.add_argument("--vocab", type=int, default=128256, help="smaller for a CPU dry run")
    args = parser.parse_args()
    name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {name}", flush=True)
    CONFIG["vocab_size"] = VOCAB[0] = args.vocab
    head_and_loss(args.loss_tokens)
    for policy in args.policies.split(","):
        training_step(layers=args.layers, tokens=args.tokens, policy=policy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
