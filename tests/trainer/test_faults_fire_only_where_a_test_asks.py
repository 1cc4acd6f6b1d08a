"""The test-only fault hook: off unless KUBETUNE_FAULT_INJECTION is set, then only at the step, rank and size asked."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutput

from kubetune_trainer.classify import classify
from kubetune_trainer.contract import ErrorClass, Stage
from kubetune_trainer.errors import InvalidInput
from kubetune_trainer.faults import FAULT_INJECTION_ENV, Fault, FaultInjector, FaultPlan, install_faults, optimizer_step


class Echo(nn.Module):
    """A forward that returns logits shaped like a causal LM's."""

    def forward(self, input_ids: torch.Tensor) -> CausalLMOutput:
        return CausalLMOutput(logits=input_ids.float().unsqueeze(-1))


def _forward(model: nn.Module, tokens: int) -> torch.Tensor:
    output: CausalLMOutput = model(input_ids=torch.ones(1, tokens, dtype=torch.long))
    assert output.logits is not None
    return output.logits


def test_without_the_variable_nothing_is_installed() -> None:
    model = Echo()
    assert install_faults(model, environ={}, rank=0) is None
    assert not model._forward_pre_hooks
    assert not model._forward_hooks


def test_the_plan_round_trips_through_the_environment() -> None:
    plan = FaultPlan(faults=(Fault(kind="stall", step=3, seconds=30.0), Fault(kind="oom", above_tokens=64, rank=1)))
    environ = plan.to_env()
    assert set(environ) == {FAULT_INJECTION_ENV}
    assert FaultPlan.from_env(environ) == plan
    assert (
        FaultPlan.from_env({FAULT_INJECTION_ENV: '[{"kind": "stall", "step": 3, "seconds": 30}]'}).faults[0].step == 3
    )


@pytest.mark.parametrize("raw", ['[{"kind": "explode"}]', "oom", '{"kind": "oom"}', '[{"kind": "oom", "stepp": 2}]'])
def test_a_malformed_plan_fails_loudly_naming_the_variable_not_the_model(raw: str) -> None:
    with pytest.raises(InvalidInput) as failed:
        FaultPlan.from_env({FAULT_INJECTION_ENV: raw})
    error = classify(failed.value, stage=Stage.INITIALIZATION, job_uid="u")
    assert error.error_class is ErrorClass.INVALID_INPUT
    assert FAULT_INJECTION_ENV in error.message
    assert error.hint is not None
    assert FAULT_INJECTION_ENV in error.hint
    assert "CausalLM" not in error.hint


def test_oom_fires_only_above_its_token_threshold_inside_a_training_step() -> None:
    model = Echo()
    FaultInjector(FaultPlan(faults=(Fault(kind="oom", above_tokens=8),)), rank=0).install(model)

    _forward(model, 64)  # outside a training step (an evaluation): untouched
    with optimizer_step(1):
        _forward(model, 8)
        with pytest.raises(torch.OutOfMemoryError, match="step 1"):
            _forward(model, 9)


def test_a_stall_sleeps_once_at_its_step_and_only_on_its_rank() -> None:
    slept: list[float] = []
    plan = FaultPlan(faults=(Fault(kind="stall", step=3, rank=1, seconds=30.0),))
    on_rank_1, on_rank_0 = Echo(), Echo()
    FaultInjector(plan, rank=1, sleep=slept.append).install(on_rank_1)
    FaultInjector(plan, rank=0, sleep=slept.append).install(on_rank_0)

    for step in (1, 2, 3, 4):
        with optimizer_step(step):
            for _ in range(2):  # two micro-batches per step
                _forward(on_rank_1, 4)
                _forward(on_rank_0, 4)

    assert slept == [30.0]


def test_a_non_finite_loss_fault_makes_the_logits_nan_at_its_step() -> None:
    model = Echo()
    FaultInjector(FaultPlan(faults=(Fault(kind="nonFiniteLoss", step=2),)), rank=0).install(model)
    with optimizer_step(1):
        assert torch.isfinite(_forward(model, 4)).all()
    with optimizer_step(2):
        assert torch.isnan(_forward(model, 4)).all()


class Layer(nn.Linear):
    """A decoder layer: hidden states in, hidden states out."""


class Layered(nn.Module):
    """Two decoder layers the model names as never to be split, as Hugging Face models do."""

    _no_split_modules: ClassVar[list[str]] = ["Layer"]

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(4, 4)
        self.layers = nn.ModuleList([Layer(4, 4), Layer(4, 4)])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(input_ids)
        for layer in self.layers:
            hidden = layer(hidden)
        return hidden


def test_an_oom_in_a_layer_fires_in_that_layer_forward_or_backward_only() -> None:
    model = Layered()
    plan = FaultPlan(faults=(Fault(kind="oom", layer=1), Fault(kind="oom", layer=0, backward=True)))
    FaultInjector(plan, rank=0).install(model)
    ids = torch.ones(1, 3, dtype=torch.long)
    model(ids).sum().backward()  # outside a training step: nothing fires
    with optimizer_step(1), pytest.raises(torch.OutOfMemoryError, match="in decoder layer 1:"):
        model(ids)  # layer 0's forward ran: its fault is for its backward
    only_backward = Layered()
    FaultInjector(FaultPlan(faults=(Fault(kind="oom", layer=0, backward=True),)), rank=0).install(only_backward)
    with optimizer_step(1):
        loss = only_backward(ids).sum()  # the forward passes
        with pytest.raises(torch.OutOfMemoryError, match="in decoder layer 0's backward"):
            loss.backward()


def test_a_layer_the_model_lacks_is_refused_naming_the_variable() -> None:
    with pytest.raises(InvalidInput, match="names decoder layer 2; the model has 2"):
        FaultInjector(FaultPlan(faults=(Fault(kind="oom", layer=2),)), rank=0).install(Layered())
