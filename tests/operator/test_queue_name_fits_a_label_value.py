"""queueName becomes the `kueue.x-k8s.io/queue-name` label's value, so it must fit one (63 characters)."""

from __future__ import annotations

from kubetune_operator.render import render_attempt
from kubetune_operator.render.labels import QUEUE_LABEL
from kubetune_operator.resolve.resolution import Resolution, parse_spec

from .core_builders import JOB, SETTINGS, resolved, spec

BASE = {"model": "togethercomputer/llama-2-7b-chat", "trainingFile": "s3://data/train.jsonl"}


def test_a_queue_name_longer_than_a_label_value_is_refused_naming_the_field() -> None:
    refused = parse_spec({**BASE, "queueName": "q" * 64})
    assert isinstance(refused, Resolution)
    assert any("queueName" in problem for problem in refused.field_errors)


def test_the_longest_queue_name_allowed_is_rendered_as_the_label() -> None:
    name = "team-a.gpu-" + "q" * 52
    objects = render_attempt(resolved(spec(queueName=name)), job=JOB, attempt=1, settings=SETTINGS)
    job = objects[-1]
    assert job["metadata"]["labels"][QUEUE_LABEL] == name
    assert len(name) == 63
