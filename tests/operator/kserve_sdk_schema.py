"""KServe's InferenceService schema as its Python SDK states it, for validating rendered manifests offline.

No package on PyPI ships the InferenceService CRD, and installing the `kserve` SDK would pull a model
server's dependencies (and pin psutil and protobuf below what the trainer uses). Its wheel does carry
the generated OpenAPI model classes (`kserve/models/v1beta1_*.py`), each with `openapi_types` and
`attribute_map`: the fields and types of the CRD's schema. `write` reads them from a downloaded wheel
(`pip download kserve==0.21.0 --no-deps`) with `ast`, never importing it, into `kserve_v1beta1_fields.json`:

    python -m tests.operator.kserve_sdk_schema /path/to/kserve-0.21.0-py3-none-any.whl

`validate` walks a manifest through those classes; Kubernetes types inside (V1Container, V1Volume, ...)
are walked through the `kubernetes` client's own model classes, the same generated shape.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

FIELDS_FILE = Path(__file__).with_name("kserve_v1beta1_fields.json")
_MAPS = ("openapi_types", "attribute_map")
_REQUIRED = re.compile(r"Invalid value for `(\w+)`, must not be `None`")


def _classes_in_wheel(wheel: Path) -> dict[str, dict[str, Any]]:
    classes: dict[str, dict[str, Any]] = {}
    with zipfile.ZipFile(wheel) as archive:
        version = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        for name in archive.namelist():
            if not re.fullmatch(r"kserve/models/v1beta1_\w+\.py", name):
                continue
            source = archive.read(name).decode()
            for node in ast.walk(ast.parse(source)):
                if not isinstance(node, ast.ClassDef):
                    continue
                found: dict[str, Any] = {}
                for item in node.body:
                    target = item.targets[0] if isinstance(item, ast.Assign) else None
                    if isinstance(item, ast.Assign) and isinstance(target, ast.Name) and target.id in _MAPS:
                        found[target.id] = ast.literal_eval(item.value)
                if "openapi_types" in found:
                    attribute_map = found["attribute_map"]
                    fields = {attribute_map[a]: t for a, t in found["openapi_types"].items()}
                    required = sorted(attribute_map[a] for a in set(_REQUIRED.findall(source)) if a in attribute_map)
                    classes[node.name] = {"fields": fields, "required": required}
    classes["_source"] = {"fields": {}, "required": [version.split("/")[0]]}
    return classes


def write(wheel: Path) -> None:
    FIELDS_FILE.write_text(json.dumps(_classes_in_wheel(wheel), indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _kserve_classes() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = json.loads(FIELDS_FILE.read_text(encoding="utf-8"))
    return loaded


def _kubernetes_class(name: str) -> dict[str, Any] | None:
    from kubernetes import client

    model = getattr(client, name, None)
    if model is None:
        return None
    mapping = model.attribute_map
    return {"fields": {mapping[a]: t for a, t in model.openapi_types.items()}, "required": []}


_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "object": (object,),
    "datetime": (str,),
}


def _normalised(type_name: str) -> str:
    """The kubernetes client spells its containers List[X] and Dict[str, X]; KServe's SDK list[X], dict(str, X)."""
    if type_name.startswith("List["):
        return "list[" + type_name[5:]
    if type_name.startswith("Dict["):
        return "dict(" + type_name[5:-1] + ")"
    return type_name


class _Walk:
    def __init__(self) -> None:
        self.kserve = _kserve_classes()
        self.problems: list[str] = []

    def value(self, value: Any, type_name: str, path: str) -> None:
        type_name = _normalised(type_name)
        if type_name in _SCALARS:
            self.scalar(value, type_name, path)
        elif type_name.startswith("list["):
            if not isinstance(value, list):
                self.problems.append(f"{path}: expected a list")
                return
            for index, item in enumerate(value):
                self.value(item, type_name[5:-1], f"{path}[{index}]")
        elif type_name.startswith("dict("):
            if not isinstance(value, dict):
                self.problems.append(f"{path}: expected a map")
                return
            inner = type_name[type_name.index(",") + 1 : -1].strip()
            for key, item in value.items():
                self.value(item, inner, f"{path}.{key}")
        else:
            self.object(value, type_name, path)

    def scalar(self, value: Any, type_name: str, path: str) -> None:
        if type_name == "int" and isinstance(value, bool):
            self.problems.append(f"{path}: a boolean where an integer is expected")
        elif not isinstance(value, _SCALARS[type_name]):
            self.problems.append(f"{path}: {type(value).__name__} where {type_name} is expected")

    def object(self, value: Any, type_name: str, path: str) -> None:
        schema = self.kserve.get(type_name) or _kubernetes_class(type_name)
        if schema is None:
            self.problems.append(f"{path}: unknown type {type_name}")
            return
        if not isinstance(value, dict):
            self.problems.append(f"{path}: expected an object ({type_name})")
            return
        self.problems.extend(f"{path}.{key}: required by {type_name}" for key in schema["required"] if key not in value)
        for key, item in value.items():
            if key not in schema["fields"]:
                self.problems.append(f"{path}.{key}: not a field of {type_name}")
            else:
                self.value(item, schema["fields"][key], f"{path}.{key}")


def validate(manifest: dict[str, Any], kind: str = "V1beta1InferenceService") -> list[str]:
    """Every field of `manifest` the SDK's schema does not know or types otherwise, as `path: problem`."""
    walk = _Walk()
    walk.value(manifest, kind, kind)
    return walk.problems


if __name__ == "__main__":
    write(Path(sys.argv[1]))
