"""Reading manifest files as kubectl reads them: one loader for every command that reads a manifest.

kubectl (sigs.k8s.io/yaml, over go-yaml) reads `learningRate: 1e-5` as a number; PyYAML's YAML
1.1 resolver reads it as the string "1e-5", so a job kubectl runs would be refused here. This
loader resolves numbers as YAML 1.2 and go-yaml do: `1e-5`, `1E5`, `2.5e+3`, `.5` and `1.` are
floats; `.inf` and `.nan` too. Everything else (booleans, nulls, ints, timestamps) is PyYAML's
safe schema, which agrees with go-yaml for what a manifest holds.

It is bounded, since a manifest may come from anyone: at most `MAX_BYTES` of text (the API
server's own request limit), `MAX_DEPTH` levels of nesting, and `MAX_NODES` values per document
counted with every alias expanded (a 443-byte "billion laughs" of 8 levels of aliases expands to
10^8 values: refused in milliseconds, before anything walks it). A file that is not UTF-8 text or
not YAML is one line naming the file and what is wrong, never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 3 * 1024 * 1024
"""The API server refuses request bodies over 3 MiB; no manifest it accepts is larger."""
MAX_DEPTH = 64
"""Nesting levels; a FineTuneJob has under 10."""
MAX_NODES = 100_000
"""Values per document with aliases expanded; a FineTuneJob has about 100, the largest template a few hundred."""

_FLOAT_TAG = "tag:yaml.org,2002:float"
_YAML12_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


class ManifestYamlError(ValueError):
    """A manifest file that cannot be read as YAML; the message is one line naming the file."""


class _TooDeep(Exception):
    """Nesting past MAX_DEPTH, found while counting (the caller adds the source)."""


class _ManifestLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats (what kubectl reads as numbers)."""


_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ManifestLoader.add_implicit_resolver(_FLOAT_TAG, _YAML12_FLOAT, list("-+0123456789."))


def load_documents(text: str, *, source: str) -> list[Any]:
    """Every non-empty YAML document in `text`, numbers as kubectl reads them; bounded (see the module)."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise ManifestYamlError(f"{source}: larger than {MAX_BYTES // (1024 * 1024)} MiB, the API server's limit")
    try:
        for document_index, expanded in enumerate(_expanded_sizes(text)):
            if expanded > MAX_NODES:
                where = f" (document {document_index + 1})" if document_index else ""
                raise ManifestYamlError(
                    f"{source}{where}: over {MAX_NODES:,} values once its aliases are expanded; "
                    "a manifest never needs that many (an alias bomb?)"
                )
        return [d for d in yaml.load_all(text, Loader=_ManifestLoader) if d is not None]
    except _TooDeep as deep:
        raise ManifestYamlError(f"{source}: {deep}") from None
    except yaml.YAMLError as error:
        raise ManifestYamlError(f"{source}: not valid YAML: {_one_line(error)}") from None


def read_documents(path: Path) -> list[Any]:
    """`load_documents` of a file; an unreadable, oversized, binary or non-YAML file is a ManifestYamlError."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as error:
        raise ManifestYamlError(f"{path}: cannot read: {error.strerror or error}") from None
    if len(raw) > MAX_BYTES:
        raise ManifestYamlError(f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MiB, the API server's limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ManifestYamlError(
            f"{path}: not a YAML file: byte {raw[error.start]:#04x} at offset {error.start} is not UTF-8 text"
        ) from None
    return load_documents(text, source=str(path))


def _expanded_sizes(text: str) -> Iterator[int]:
    """Per document, how many values it holds with every alias expanded; checks the depth on the way.

    One pass over the parser's events (no tree is built): an anchored value's expanded size is
    recorded when it ends, and an alias adds that size, so 8 levels of 9 aliases cost 72 additions.
    """
    anchors: dict[str, int] = {}
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, values so far) per open collection
    total = 0

    def add(count: int) -> None:
        nonlocal total
        if open_nodes:
            anchor, so_far = open_nodes[-1]
            open_nodes[-1] = (anchor, so_far + count)
        else:
            total += count

    for event in yaml.parse(text, Loader=_ManifestLoader):
        if isinstance(event, yaml.DocumentStartEvent):
            anchors, total = {}, 0
        elif isinstance(event, yaml.DocumentEndEvent):
            yield total
        elif isinstance(event, yaml.AliasEvent):
            add(anchors.get(event.anchor or "", 1))
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                anchors[event.anchor] = 1
            add(1)
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(open_nodes) >= MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise _TooDeep(f"nested more than {MAX_DEPTH} levels deep at line {line}")
            open_nodes.append((event.anchor, 1))
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, count = open_nodes.pop()
            if anchor:
                anchors[anchor] = count
            add(count)


def _one_line(error: yaml.YAMLError) -> str:
    """PyYAML's message (problem, line, column) without its multi-line source excerpt."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = error.problem or error.context or "unreadable"
        if error.context and error.problem:
            what = f"{error.context}: {error.problem}"
        return f"{what}{where}"
    return " ".join(str(error).split())
