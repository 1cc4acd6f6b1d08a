"""Log lines never carry a secret: the values of the job's secret variables are masked in every record.

Secrets reach the trainer as environment variables (the HF token, the W&B key, S3 credentials)
and are passed to libraries, whose errors sometimes quote them: a refused header, a URL with
credentials, a traceback's last line. The classification table redacts what goes into the
Result; this formatter covers everything else that is logged, library records and tracebacks
included, by replacing each known secret value wherever it appears.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from .contract import TrainerConfig

MASK = "<redacted>"

ALWAYS_SECRET = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
"""Variables that hold a secret whatever the job's config names."""

SHORTEST_MASKED = 6
"""Shorter values are not masked: masking `1` or `true` everywhere would garble every line."""


def secret_values(config: TrainerConfig, environ: Mapping[str, str]) -> list[str]:
    """The secret values this run holds, raw and stripped, longest first (so a value's prefix never masks first)."""
    names = set(ALWAYS_SECRET)
    if config.model.token_env:
        names.add(config.model.token_env)
    if config.wandb is not None:
        names.add(config.wandb.api_key_env)
    values = {variant for name in names for variant in (environ.get(name, ""), environ.get(name, "").strip())}
    return sorted((value for value in values if len(value) >= SHORTEST_MASKED), key=len, reverse=True)


class SecretMaskingFormatter(logging.Formatter):
    """A formatter that replaces every given secret value in the formatted record, traceback included."""

    def __init__(self, fmt: str, *, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self.mask(super().format(record))

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


def install(root: logging.Logger, *, fmt: str, secrets: Iterable[str]) -> None:
    """Give every handler of `root` the masking formatter."""
    formatter = SecretMaskingFormatter(fmt, secrets=secrets)
    for handler in root.handlers:
        handler.setFormatter(formatter)
