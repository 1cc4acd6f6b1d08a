"""bf16 weights under AdamW at learning rate 1e-5: a master copy or compensation keeps the updates pure bf16 loses."""

from __future__ import annotations

import torch

from kubetune_trainer.contract import MasterWeights
from kubetune_trainer.training.master_weights import MasterWeightAdamW
from kubetune_trainer.training.optim import build_optimizer

STEPS = 30
LR = 1e-5


def _weights() -> torch.Tensor:
    return torch.randn(64, 64, generator=torch.Generator().manual_seed(0)) * 0.02  # Llama's init scale


def _gradients() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(64, 64, generator=generator) * 1e-3 + 1e-3 for _ in range(STEPS)]


def _train(parameter: torch.nn.Parameter, optimizer: torch.optim.Optimizer) -> None:
    for gradient in _gradients():
        parameter.grad = gradient.to(parameter.dtype)
        optimizer.step()


def _reference() -> torch.Tensor:
    """fp32 AdamW on fp32 weights fed the bf16-rounded gradients the bf16 runs see."""
    parameter = torch.nn.Parameter(_weights().bfloat16().float())
    optimizer = torch.optim.AdamW([parameter], lr=LR, weight_decay=0.1)
    for gradient in _gradients():
        parameter.grad = gradient.bfloat16().float()
        optimizer.step()
    return parameter.detach()


def _bf16_run(master_weights: MasterWeights) -> tuple[torch.nn.Parameter, torch.optim.Optimizer]:
    parameter = torch.nn.Parameter(_weights().bfloat16())
    model = torch.nn.Linear(64, 64, bias=False)
    model.weight = parameter
    optimizer = build_optimizer(model, learning_rate=LR, weight_decay=0.1, master_weights=master_weights)
    _train(parameter, optimizer)
    return parameter, optimizer


def test_fp32_master_copy_follows_fp32_adamw_exactly() -> None:
    parameter, optimizer = _bf16_run(MasterWeights.FP32)
    assert isinstance(optimizer, MasterWeightAdamW)
    master = optimizer.state[parameter]["master"]
    assert master.dtype == torch.float32
    torch.testing.assert_close(master, _reference(), rtol=0, atol=1e-8)
    assert torch.equal(parameter.detach(), master.bfloat16())  # the model holds the master rounded to nearest


def test_compensated_bf16_tracks_fp32_adamw_and_pure_bf16_does_not() -> None:
    start = _weights().bfloat16()
    moved_by_reference = (_reference() - start.float()).abs().mean()
    compensated, optimizer = _bf16_run(MasterWeights.BF16_COMPENSATED)
    value = compensated.detach().float() + optimizer.state[compensated]["compensation"].float()
    assert (value - _reference()).abs().mean() < 0.01 * moved_by_reference
    pure, _ = _bf16_run(MasterWeights.BF16)
    lost = (pure.detach() == start).float().mean()
    assert lost > 0.5, f"pure bf16 kept {1 - lost:.0%} of its weights' updates"


def test_checkpointed_state_stays_fp32() -> None:
    parameter, optimizer = _bf16_run(MasterWeights.FP32)
    saved = optimizer.state_dict()
    fresh = MasterWeightAdamW([parameter], lr=LR, master_weights=MasterWeights.FP32)
    fresh.load_state_dict(saved)
    state = fresh.state[parameter]
    assert {state[key].dtype for key in ("master", "exp_avg", "exp_avg_sq")} == {torch.float32}
    torch.testing.assert_close(state["master"], optimizer.state[parameter]["master"], rtol=0, atol=0)


def test_fp32_weights_keep_torch_adamw() -> None:
    model = torch.nn.Linear(4, 4)
    optimizer = build_optimizer(model, learning_rate=LR, weight_decay=0.0, master_weights=MasterWeights.FP32)
    assert type(optimizer) is torch.optim.AdamW
