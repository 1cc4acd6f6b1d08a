"""Test-only fault injection: make the real trainer fail (or hang) inside a training forward pass.

No GPU runs here, so a CUDA out-of-memory error and a stalled step cannot happen for real; tests
switch this on to drive the real trainer through those paths. It is enabled only by the
environment variable `KUBETUNE_FAULT_INJECTION`, which nothing but tests sets; the operator never
renders it. Its value is a JSON list of faults:

    KUBETUNE_FAULT_INJECTION='[{"kind": "oom", "aboveTokens": 64},
                               {"kind": "stall", "step": 3, "seconds": 30}]'

- `oom` raises `torch.OutOfMemoryError` from the model's forward pass, while the micro-batch holds
  more than `aboveTokens` tokens (0: always); with `layer`, from decoder layer `layer`'s forward
  instead (0-based): mid-forward, after the layers before it ran and, under FSDP, after that
  layer's weights were gathered, where a real OOM in its activations would strike; with `layer`
  and `backward`, from that layer's backward instead (before its gradients are computed);
- `stall` sleeps `seconds` in the forward pass, once (the step's first micro-batch);
- `nonFiniteLoss` makes the step's loss NaN (the model's logits become NaN, like diverged weights);

each at optimizer step `step` (1-based, counted over the whole run; absent: every step) and on
rank `rank` (absent: every rank). Faults fire only inside a training step (see `optimizer_step`):
evaluation forward passes are never touched.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel
from torch import nn
from torch.utils.hooks import RemovableHandle

from .errors import InvalidInput
from .model_blocks import no_split_blocks

FAULT_INJECTION_ENV = "KUBETUNE_FAULT_INJECTION"

FaultKind = Literal["oom", "stall", "nonFiniteLoss"]


class Fault(BaseModel):
    """One fault: what happens, at which optimizer step, on which rank."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    kind: FaultKind = Field(description="oom, stall or nonFiniteLoss.")
    step: int | None = Field(
        None, ge=1, description="Optimizer step (1-based, whole run) it fires at; absent: every step."
    )
    rank: int | None = Field(None, ge=0, description="The only rank it fires on; absent: every rank.")
    above_tokens: int = Field(0, ge=0, description="oom: fires only while the micro-batch has more tokens than this.")
    seconds: float = Field(0.0, ge=0.0, description="stall: how long the forward pass sleeps.")
    layer: int | None = Field(
        None, ge=0, description="oom: the decoder layer (0-based) whose forward raises; absent: the model's forward."
    )
    backward: bool = Field(False, description="oom with layer: raise in that layer's backward, not its forward.")

    def fires(self, *, step: int, rank: int) -> bool:
        return (self.step is None or self.step == step) and (self.rank is None or self.rank == rank)


_FAULT_LIST = TypeAdapter(tuple[Fault, ...])


class FaultPlan(BaseModel):
    """The faults a test asked for; empty (the production case) means the hook is never installed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    faults: tuple[Fault, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> FaultPlan:
        raw = environ.get(FAULT_INJECTION_ENV, "").strip()
        if not raw:
            return cls()
        try:
            return cls(faults=_FAULT_LIST.validate_json(raw))
        except ValueError as exc:
            # A domain error, not a bare ValueError: the classification table would blame the model.
            raise InvalidInput(
                f"{FAULT_INJECTION_ENV} (test-only) is not a JSON list of faults: {exc}",
                reason="FaultInjectionInvalid",
                field=FAULT_INJECTION_ENV,
                hint=f"Unset {FAULT_INJECTION_ENV} (only tests set it), or fix it as the faults module documents.",
            ) from None

    def to_env(self) -> dict[str, str]:
        """The environment entry that makes a trainer process run this plan (for tests)."""
        return {FAULT_INJECTION_ENV: _FAULT_LIST.dump_json(self.faults, by_alias=True, exclude_defaults=True).decode()}

    def __bool__(self) -> bool:
        return bool(self.faults)


_current_step: contextvars.ContextVar[int | None] = contextvars.ContextVar("kubetune_optimizer_step", default=None)


@contextlib.contextmanager
def optimizer_step(number: int) -> Iterator[None]:
    """Mark the forward passes inside as optimizer step `number`'s: the only ones faults fire in.

    The step is ambient, like autocast's state, because the forward hook cannot be handed it.
    """
    token = _current_step.set(number)
    try:
        yield
    finally:
        _current_step.reset(token)


class FaultInjector:
    """Fires a `FaultPlan` from forward hooks on the model: before its forward (oom, stall), on its token
    embeddings' output (NaN: every later activation and the loss are NaN, whichever loss path reads them)."""

    def __init__(self, plan: FaultPlan, *, rank: int, sleep: Callable[[float], None] = time.sleep) -> None:
        self.plan = plan
        self.rank = rank
        self._sleep = sleep
        self._stalled: set[tuple[int, int]] = set()

    def install(self, model: nn.Module) -> list[RemovableHandle]:
        """Hook `model`'s forward; Initialization passes the model inside DDP, so DDP's collectives come first."""
        # The chunked loss applies the head outside the model's forward (its logits are empty), so NaN
        # logits would reach no loss: the fault poisons the token embeddings instead.
        embeddings = next((module for module in model.modules() if isinstance(module, nn.Embedding)), model)
        handles = [
            model.register_forward_pre_hook(self._before_forward, with_kwargs=True),
            embeddings.register_forward_hook(self._after_forward),
        ]
        layers = no_split_blocks(model)
        for number in sorted({fault.layer for fault in self.plan.faults if fault.layer is not None}):
            if number >= len(layers):
                raise InvalidInput(
                    f"{FAULT_INJECTION_ENV} (test-only) names decoder layer {number}; the model has {len(layers)}.",
                    reason="FaultInjectionInvalid",
                    field=FAULT_INJECTION_ENV,
                    hint="Name a layer the model has.",
                )
            hook = functools.partial(self._in_layer, number)
            handles.append(layers[number].register_forward_pre_hook(hook, with_kwargs=True))
            in_backward = functools.partial(self._in_layer_backward, number)
            handles.append(layers[number].register_full_backward_pre_hook(in_backward))
        return handles

    def _firing(self) -> list[tuple[int, Fault, int]]:
        step = _current_step.get()
        if step is None:
            return []
        return [
            (index, fault, step)
            for index, fault in enumerate(self.plan.faults)
            if fault.fires(step=step, rank=self.rank)
        ]

    def _in_layer(self, number: int, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        tokens = int(hidden.shape[:-1].numel()) if isinstance(hidden, torch.Tensor) else 0
        for _, fault, step in self._firing():
            if fault.kind == "oom" and fault.layer == number and not fault.backward:
                self._out_of_memory(fault, step=step, tokens=tokens, where=f" in decoder layer {number}")

    def _in_layer_backward(self, number: int, module: nn.Module, grad_output: tuple[torch.Tensor, ...]) -> None:
        first = grad_output[0] if grad_output else None
        tokens = int(first.shape[:-1].numel()) if isinstance(first, torch.Tensor) else 0
        for _, fault, step in self._firing():
            if fault.kind == "oom" and fault.layer == number and fault.backward:
                self._out_of_memory(fault, step=step, tokens=tokens, where=f" in decoder layer {number}'s backward")

    @staticmethod
    def _out_of_memory(fault: Fault, *, step: int, tokens: int, where: str = "") -> None:
        if tokens > fault.above_tokens:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory (injected by {FAULT_INJECTION_ENV} at step {step}{where}: "
                f"a micro-batch of {tokens} tokens, above {fault.above_tokens})."
            )

    def _before_forward(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        for index, fault, step in self._firing():
            if fault.kind == "oom" and fault.layer is None:
                input_ids = kwargs.get("input_ids", args[0] if args else None)
                tokens = int(input_ids.numel()) if isinstance(input_ids, torch.Tensor) else 0
                self._out_of_memory(fault, step=step, tokens=tokens)
            elif fault.kind == "stall" and (index, step) not in self._stalled:
                self._stalled.add((index, step))
                self._sleep(fault.seconds)

    def _after_forward(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if any(fault.kind == "nonFiniteLoss" for _, fault, _ in self._firing()):
            # NaN activations: the loss is NaN, as after weights diverged.
            if isinstance(output, torch.Tensor):
                return output * torch.nan
            output.logits = output.logits * torch.nan
        return output


def install_faults(model: nn.Module, *, environ: Mapping[str, str], rank: int) -> FaultInjector | None:
    """Install the test-only faults `environ` asks for; None (nothing installed) when it asks for none."""
    plan = FaultPlan.from_env(environ)
    if not plan:
        return None
    injector = FaultInjector(plan, rank=rank)
    injector.install(model)
    return injector
