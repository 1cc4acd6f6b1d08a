"""A CRD's openAPIV3Schema as the emulator checks it: jsonschema (Draft 4), each failure a field cause.

`fieldValidation=Strict` (kubectl's default) also refuses unknown fields, except under the root
`metadata` and where `x-kubernetes-preserve-unknown-fields` keeps a subtree open. Not checked:
defaulting, pruning, CEL rules, int-or-string and the other `x-kubernetes-*` extensions.
"""

from __future__ import annotations

from typing import Any

import jsonschema

JsonObject = dict[str, Any]


class SchemaCheck:
    """The lenient and the strict validator of one CRD version's schema."""

    def __init__(self, schema: JsonObject) -> None:
        self._lenient = jsonschema.Draft4Validator(schema)
        self._strict = jsonschema.Draft4Validator(_strict(schema))

    def causes(self, body: JsonObject, *, strict: bool) -> list[JsonObject]:
        """One `FieldValueInvalid` cause per failure, named by its dotted field path (empty: valid)."""
        causes = []
        for error in (self._strict if strict else self._lenient).iter_errors(body):
            path = [str(part) for part in error.absolute_path]
            if error.validator in {"required", "additionalProperties"}:
                path.append(error.message.split("'")[1])
            causes.append({"reason": "FieldValueInvalid", "field": ".".join(path), "message": error.message})
        return causes


def _strict(schema: JsonObject, *, path: tuple[str, ...] = ()) -> JsonObject:
    """The schema with unknown fields forbidden, as `fieldValidation=Strict`; the root metadata stays open."""
    node = dict(schema)
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields") and path != ("metadata",):
        node["additionalProperties"] = False
    if "properties" in node:
        node["properties"] = {name: _strict(child, path=(*path, name)) for name, child in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"], path=(*path, "[]"))
    return node
