"""Rules that span several fields, reported at the field a user has to change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


@dataclass(frozen=True)
class Violation:
    loc: tuple[str | int, ...]
    value: Any
    message: str


def raise_violations(title: str, violations: list[Violation]) -> None:
    """Raise one ValidationError carrying every violation at its own field path."""
    if not violations:
        return
    raise ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("cross_field", "{detail}", {"detail": v.message}),
                loc=v.loc,
                input=v.value,
            )
            for v in violations
        ],
    )
