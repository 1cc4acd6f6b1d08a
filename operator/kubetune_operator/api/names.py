"""The API's names: group, version, kinds, and how catalog aliases become object names."""

from __future__ import annotations

import re
from dataclasses import dataclass

GROUP = "kubetune.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    scope: str

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


FINETUNEJOB = Kind("FineTuneJob", "finetunejobs", "finetunejob", ("ftj",), "Namespaced")
BASEMODELTEMPLATE = Kind("BaseModelTemplate", "basemodeltemplates", "basemodeltemplate", ("bmt",), "Cluster")

_NOT_DNS = re.compile(r"[^a-z0-9.-]+")


def object_name_for_alias(alias: str) -> str:
    """A DNS-safe object name for a catalog alias: `Qwen/Qwen2.5-7B-Instruct` -> `qwen2.5-7b-instruct`.

    Kubernetes names cannot hold `/`, so a template keeps its Hugging Face style name as an
    alias and is stored under the repo part, lowercased.
    """
    name = _NOT_DNS.sub("-", alias.rsplit("/", 1)[-1].lower()).strip("-.")
    if not name:
        raise ValueError(f"alias {alias!r} has no letters or digits to make an object name from")
    return name[:253]
