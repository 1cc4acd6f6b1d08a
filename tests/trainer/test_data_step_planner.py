"""The step planner: every example once per epoch, the same plan for the same seed and epoch, full
micro-batches under the token budget, and the same number of micro-batches on every rank."""

from __future__ import annotations

import math
import random

import pytest

from kubetune_trainer.data.batching import count_steps, plan_epoch

# Chat-like lengths, 30 to 500 tokens, as in the throughput benchmark.
LENGTHS = [random.Random(7).randint(30, 500) for _ in range(203)]


def test_every_example_is_seen_once_per_epoch_in_steps_of_the_batch_size() -> None:
    plan = plan_epoch(LENGTHS, examples_per_step=16, token_budget=1024, seed=3, epoch=0)
    seen = [index for step in plan.steps for index in step.indices]
    assert sorted(seen) == list(range(len(LENGTHS)))
    assert [len(step.indices) for step in plan.steps] == [16] * 12 + [11]
    assert len(plan.steps) == count_steps(len(LENGTHS), examples_per_step=16)


def test_the_plan_depends_only_on_seed_and_epoch() -> None:
    def plan(seed: int, epoch: int) -> list[tuple[int, ...]]:
        return [
            step.indices
            for step in plan_epoch(LENGTHS, examples_per_step=16, token_budget=1024, seed=seed, epoch=epoch).steps
        ]

    assert plan(3, 0) == plan(3, 0)
    assert plan(3, 0) != plan(3, 1)
    assert plan(3, 0) != plan(4, 0)


def test_packed_micro_batches_stay_under_the_budget_and_waste_little() -> None:
    budget = 1024
    plan = plan_epoch(LENGTHS, examples_per_step=32, token_budget=budget, seed=0, epoch=0)
    for step in plan.steps:
        tokens = [sum(LENGTHS[i] for i in batch) for batch in step.micro_batches]
        assert max(tokens) <= budget
        # First-fit decreasing: at most one micro-batch more than a perfect packing would need.
        assert len(step.micro_batches) <= math.ceil(sum(tokens) / budget) + 1


def test_padded_micro_batches_group_similar_lengths() -> None:
    budget = 2048
    plan = plan_epoch(LENGTHS, examples_per_step=32, token_budget=budget, seed=0, epoch=0, packing=False)
    padded = real = 0
    for step in plan.steps:
        for batch in step.micro_batches:
            width = max(LENGTHS[i] for i in batch)
            assert width * len(batch) <= budget
            padded += width * len(batch)
            real += sum(LENGTHS[i] for i in batch)
    assert padded / real < 1.15


@pytest.mark.parametrize("world_size", [2, 3])
def test_every_rank_runs_the_same_number_of_micro_batches(world_size: int) -> None:
    plan = plan_epoch(LENGTHS, examples_per_step=24, token_budget=4096, seed=0, epoch=2, world_size=world_size)
    for step in plan.steps:
        shares = [step.for_rank(rank, world_size) for rank in range(world_size)]
        assert len({len(share) for share in shares}) == 1
        assert sorted(i for share in shares for batch in share for i in batch) == sorted(step.indices)
    # 203 = 8 x 24 + 11: the last, short step still feeds every rank.
    assert (len(plan.steps), plan.dropped) == (9, ())


def test_a_final_step_smaller_than_the_ranks_is_dropped_and_counted() -> None:
    plan = plan_epoch([10] * 9, examples_per_step=4, token_budget=100, seed=0, epoch=0, world_size=2)
    assert len(plan.steps) == 2 == count_steps(9, examples_per_step=4, world_size=2)
    assert len(plan.dropped) == 1


def test_an_example_longer_than_the_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="the budget must be at least max_seq_length"):
        plan_epoch([10, 600], examples_per_step=2, token_budget=512, seed=0, epoch=0)
