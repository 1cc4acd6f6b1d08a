"""Deterministic object names: the same job and attempt always give the same names.

A restarted operator recomputes a name instead of remembering it, and a create that meets
409 Conflict finds the object it made before. Every name is a DNS-1035 label of at most 63
characters, pod hostnames of an Indexed Job included (`<job>-a<k>-<index>`): a long job name
is cut and given a short hash of the full name, so two long names never collide.
"""

from __future__ import annotations

import hashlib

DNS_LABEL_MAX = 63
_LONGEST_TAIL = len("-a9999-127")
"""The longest suffix any name adds: an attempt and a pod index (nodes <= 128)."""
_BASE_MAX = DNS_LABEL_MAX - _LONGEST_TAIL
_HASH_LENGTH = 8


def base_name(job: str) -> str:
    """The job name, or for a long one its head plus a hash of the whole, short enough for any suffix."""
    if len(job) <= _BASE_MAX:
        return job
    digest = hashlib.sha256(job.encode()).hexdigest()[:_HASH_LENGTH]
    head = job[: _BASE_MAX - _HASH_LENGTH - 1].rstrip("-")
    return f"{head}-{digest}"


def attempt_name(job: str, attempt: int) -> str:
    """Name of attempt `attempt`'s batch Job, ConfigMap and headless Service: `<job>-a<attempt>`."""
    if not 1 <= attempt <= 9999:
        raise ValueError(f"attempt must be 1..9999, got {attempt}")
    return f"{base_name(job)}-a{attempt}"


def pod_hostname(job: str, attempt: int, index: int) -> str:
    """The hostname an Indexed Job gives pod `index`: `<job name>-<index>`."""
    return f"{attempt_name(job, attempt)}-{index}"


def preflight_name(job: str) -> str:
    """Name of the preflight Job and its ConfigMap."""
    return f"{base_name(job)}-preflight"


def trainer_account_name(job: str) -> str:
    """Name of the ServiceAccount, Role and RoleBinding trainer pods use (one per job, every attempt)."""
    return f"{base_name(job)}-trainer"
