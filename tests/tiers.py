"""The test tiers, given to every test at collection (tests/conftest.py), so `-m` selects by tier.

- `unit`: pure code in this process; no model, no API emulator, no child process.
- `integration`: the real operator against the API emulator, the real trainer on tiny models,
  real kubectl, promtool, Prometheus or Helm, or any test module that starts processes.
- `e2e`: everything under tests/e2e: jobs through the sandbox, from apply to a saved model.
- `slow` (beside one of the above): a module whose tests take tens of seconds on 2 cores:
  every e2e test, and the modules in SLOW_MODULES (torchrun runs, full local runs, subprocess
  trainers waiting on a watchdog). `make test-fast` leaves them out.

A test's tier comes from where it lives and what it uses, so a new test needs no marker: a test
under tests/sandbox, tests/monitoring or tests/deploy is integration, as is one that takes a
fixture of INTEGRATION_FIXTURES or lives in a module that imports subprocess; the rest is unit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

INTEGRATION_DIRS = frozenset({"sandbox", "monitoring", "deploy"})
INTEGRATION_FIXTURES = frozenset(
    {
        # tests/trainer: tiny real models in a local HF cache, a mock hub
        "tiny_hf_home", "tiny_models", "tiny_llama", "tiny_qwen2", "tiny_mistral", "tiny_adapter",
        "private_hf_home", "offline_env", "online_env", "mock_hub", "refused_repos",
        # tests/operator: the API emulator and the real operator
        "cluster", "operator", "start_operator", "actors",
    }
)  # fmt: skip
SLOW_MODULES = frozenset(
    {
        "tests/test_readme_commands.py",
        "tests/test_wheel_ships_the_catalog.py",
        "tests/trainer/test_checkpoint_killed_mid_save_is_never_loaded.py",
        "tests/trainer/test_checkpoint_s3_on_two_nodes.py",
        "tests/trainer/test_checkpoint_sigterm_then_resume_is_exact.py",
        "tests/trainer/test_checkpoint_sigterm_under_torchrun.py",
        "tests/trainer/test_preference_loss_matches_the_papers.py",
        "tests/trainer/test_run_local_dpo_and_tool_calls.py",
        "tests/trainer/test_run_local_fine_tunes_tiny_models.py",
        "tests/trainer/test_run_local_reaches_every_error_class.py",
        "tests/trainer/test_run_local_torchrun_two_ranks.py",
        "tests/trainer/test_step_watchdog_ends_a_stalled_trainer.py",
        "tests/trainer/test_step_watchdog_is_paused_while_resuming.py",
        "tests/trainer/test_termination_message_is_whole_when_ranks_fail_together.py",
        "tests/trainer/test_training_oom_under_fsdp_without_auto_batch_fails_at_once.py",
        "tests/trainer/test_training_oom_two_fsdp_ranks_halve_together.py",
        "tests/trainer/test_training_oom_in_an_fsdp_backward_fails_at_once.py",
        "tests/trainer/test_training_refuses_more_processes_than_examples.py",
        "tests/trainer/test_training_torchrun_two_processes.py",
        "tests/monitoring/test_dashboard_panels_return_data_from_a_real_prometheus.py",
    }
)
"""Modules measured (or, for torchrun, known) to take tens of seconds; refine from `make test`'s --durations."""

TIERS = ("unit", "integration", "e2e", "slow")


def tier_of(item: pytest.Item) -> str:
    relative = Path(str(item.path)).resolve().relative_to(TESTS)
    top = relative.parts[0] if len(relative.parts) > 1 else ""
    if top == "e2e":
        return "e2e"
    fixtures = set(getattr(item, "fixturenames", ()))
    module = getattr(item, "module", None)
    starts_processes = module is not None and hasattr(module, "subprocess")
    if top in INTEGRATION_DIRS or fixtures & INTEGRATION_FIXTURES or starts_processes:
        return "integration"
    return "unit"


def mark_tiers(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(tier) for tier in TIERS[:3]):
            continue  # a module or test that says its tier keeps it
        tier = tier_of(item)
        item.add_marker(tier)
        module = Path(str(item.path)).resolve().relative_to(TESTS.parent).as_posix()
        if tier == "e2e" or module in SLOW_MODULES:
            item.add_marker("slow")
