"""Validation errors in words a user can act on: the field path, the value given, what is allowed."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from kubetune_trainer.contract import WireModel

from .fields import ALLOWED

_VALUE_LIMIT = 80
M = TypeVar("M", bound=WireModel)


@dataclass(frozen=True)
class FieldError:
    path: str
    value: str | None
    message: str
    loc: tuple[str | int, ...] = ()
    """The path as keys and list indexes, for tools; `path` is its readable form."""

    def __str__(self) -> str:
        got = "" if self.value is None else f" (got {self.value})"
        return f"{self.path}: {self.message}{got}"


class InvalidResourceError(ValueError):
    """A resource failed validation; `errors` lists every problem, each at its field."""

    def __init__(self, kind: str, errors: list[FieldError]) -> None:
        self.kind = kind
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"invalid {kind}:\n{lines}")


def field_errors(error: ValidationError, *, model: type[BaseModel] | None = None) -> list[FieldError]:
    """One FieldError per bad field; `model` lets unknown-field errors list the known ones.

    A value that fails every branch of a union (`batchSize: huge`) gets one error, not one
    per branch: the branch with a pattern hint speaks for the field, else the branches' words
    are joined with "or".
    """
    merged: dict[tuple[str | int, ...], list[tuple[ErrorDetails, FieldError]]] = {}
    for detail in error.errors(include_url=False):
        found = _field_error(detail, model=model)
        merged.setdefault(found.loc, []).append((detail, found))
    return [_merge_branches(group) for group in merged.values()]


def _merge_branches(group: list[tuple[ErrorDetails, FieldError]]) -> FieldError:
    if len(group) == 1:
        return group[0][1]
    for detail, found in group:
        if detail["type"] == "string_pattern_mismatch":
            return found
    first = group[0][1]
    words = [found.message.removeprefix("must be ") for _, found in group]
    return replace(first, message="must be " + " or ".join(dict.fromkeys(words)))


def _field_error(detail: ErrorDetails, *, model: type[BaseModel] | None) -> FieldError:
    loc = _user_loc(tuple(detail["loc"]))
    path = _path(loc)
    return replace(_describe(detail, loc=loc, path=path, model=model), loc=loc)


def _describe(
    detail: ErrorDetails, *, loc: tuple[str | int, ...], path: str, model: type[BaseModel] | None
) -> FieldError:
    kind = detail["type"]
    ctx = detail.get("ctx", {})
    value: str | None = _show(detail["input"])
    if kind == "missing":
        return FieldError(path, None, "required field is missing")
    if kind == "extra_forbidden":
        known = _known_fields(model, tuple(loc[:-1])) if model is not None else []
        elsewhere = _nested_home(model, str(loc[-1])) if model is not None else None
        return FieldError(path, None, "unknown field" + _suggestion(str(loc[-1]), known, elsewhere))
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        return FieldError(path, value, f"must be {ALLOWED.get(pattern, f'a string matching {pattern}')}")
    if kind == "cross_field":
        return FieldError(path, value, str(ctx.get("detail", detail["msg"])))
    return FieldError(path, value, _reword(detail["msg"]))


_UNION_TAGS = ("int", "str", "bool", "float", "constrained-str", "constrained-int")


def _user_loc(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """The loc without the union-branch names pydantic inserts (users never wrote them)."""
    return tuple(
        item
        for item in loc
        if isinstance(item, int) or not (item in _UNION_TAGS or "[" in item or item.startswith("function-"))
    )


def _squash(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def _suggestion(name: str, known: list[str], elsewhere: str | None) -> str:
    squashed = {_squash(k): k for k in known}
    close = difflib.get_close_matches(_squash(name), list(squashed), n=1)
    if close:
        hint = f"; did you mean {squashed[close[0]]}?"
    elif elsewhere:
        hint = f"; did you mean {elsewhere}?"
    else:
        hint = ""
    return f"{hint}; fields allowed here: {', '.join(known)}" if known else hint


def _nested_home(model: type[BaseModel], name: str, prefix: str = "", depth: int = 3) -> str | None:
    """Where a field of this name lives deeper in the model, e.g. learningRate -> spec.hyperparameters."""
    if depth == 0:
        return None
    fields = _fields_by_alias(model)
    for alias in fields:
        if _squash(alias) == _squash(name) and prefix:
            return f"{prefix}.{alias}"
    for alias, field in fields.items():
        inner = _model_in(field.annotation)
        if inner is not None:
            found = _nested_home(inner, name, f"{prefix}.{alias}" if prefix else alias, depth - 1)
            if found:
                return found
    return None


def _path(loc: tuple[str | int, ...]) -> str:
    """("spec", "lora", "targetModules", 0) -> spec.lora.targetModules[0]"""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(item)
    return ".".join(parts)


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value).replace("'", "")
    if isinstance(value, dict | list):
        text = type(value).__name__
    return text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 1] + "…"


def _reword(message: str) -> str:
    rewordings = (
        ("Input should be", "must be"),
        ("String should ", "must "),
        ("List should ", "must "),
        ("Dictionary should ", "must "),
        ("Value error, ", ""),
        ("Input ", "value "),
    )
    for prefix, replacement in rewordings:
        if message.startswith(prefix):
            return replacement + message[len(prefix) :]
    return message


def _known_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for item in loc:
        if isinstance(item, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = _fields_by_alias(current).get(item)
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(_fields_by_alias(current))
    return []


def _fields_by_alias(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """A model's fields under the names users write (the camelCase aliases)."""
    return {(f.alias or n): f for n, f in model.model_fields.items()}


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside `X | None` or `list[X]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def validate(model: type[M], data: Any, *, kind: str) -> M:
    """Parse JSON-shaped `data` into `model` or raise InvalidResourceError naming every bad field."""
    try:
        return model.parse(data)
    except ValidationError as error:
        raise InvalidResourceError(kind, field_errors(error, model=model)) from None
