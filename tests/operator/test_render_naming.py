"""Object names are deterministic DNS-1035 labels of at most 63 characters, even for long job names."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from kubetune_operator.render.naming import (
    attempt_name,
    base_name,
    pod_hostname,
    preflight_name,
    trainer_account_name,
)

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
job_names = st.from_regex(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", fullmatch=True)


def test_names_follow_the_job_and_attempt() -> None:
    assert attempt_name("support-bot", 1) == "support-bot-a1"
    assert pod_hostname("support-bot", 3, 0) == "support-bot-a3-0"
    assert preflight_name("support-bot") == "support-bot-preflight"
    assert trainer_account_name("support-bot") == "support-bot-trainer"


@given(name=job_names, attempt=st.integers(1, 9999), index=st.integers(0, 127))
def test_every_name_is_a_short_dns_label(name: str, attempt: int, index: int) -> None:
    for made in (
        attempt_name(name, attempt),
        pod_hostname(name, attempt, index),
        preflight_name(name),
        trainer_account_name(name),
    ):
        assert len(made) <= 63, made
        assert DNS_1035.match(made), made


def test_a_long_name_is_cut_and_hashed_so_two_long_names_never_collide() -> None:
    first = "a" * 50 + "-first-job"
    second = "a" * 50 + "-second-job"
    assert base_name(first) != base_name(second)
    assert base_name(first) == base_name(first)
    assert base_name(first).startswith("a" * 20)
    assert len(pod_hostname(first, 9999, 127)) <= 63
