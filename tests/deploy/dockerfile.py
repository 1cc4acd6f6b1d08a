"""A small Dockerfile reader: instructions with continuation lines joined and comments dropped.

No Docker engine runs here, so the images are checked from their Dockerfiles: what they are
built FROM, which user they run as, what they copy and install.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def words(self) -> list[str]:
        """The arguments split as the shell or the JSON (exec) form would."""
        if self.arguments.startswith("["):
            parsed: list[str] = json.loads(self.arguments)
            return parsed
        return shlex.split(self.arguments)


@dataclass(frozen=True)
class Stage:
    """One FROM ... up to the next FROM."""

    base: str
    alias: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def variables(self) -> dict[str, str]:
        """ARG and ENV names declared in this stage, with their values ('' when none)."""
        found: dict[str, str] = {}
        for instruction in self.all("ARG") + self.all("ENV"):
            for word in instruction.words():
                name, _, value = word.partition("=")
                found[name] = value
        return found


def read(path: Path) -> list[Stage]:
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), re.sub(r"\s+", " ", arguments).strip())
        if instruction.keyword == "FROM":
            words = instruction.words()
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], alias=alias, instructions=()))
        elif stages:
            last = stages[-1]
            stages[-1] = Stage(last.base, last.alias, (*last.instructions, instruction))
    return stages


def image_tag(reference: str) -> str | None:
    """The tag of `repo[:tag][@digest]`, None when untagged (a registry port is not a tag)."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None
