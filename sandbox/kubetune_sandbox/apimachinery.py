"""The pure pieces of Kubernetes API semantics the emulator needs: selectors, patches, errors, tables.

Each follows the upstream behaviour closely enough for kopf, kubectl and our operator; where it
is simpler than upstream, the docstring says how.
"""

from __future__ import annotations

import base64
import copy
import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kmock

from kubetune_operator.observe.pod_state import parse_time

JsonObject = dict[str, Any]

_SET_REQUIREMENT = re.compile(r"^\s*(?P<key>[^\s!=]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQUALITY_REQUIREMENT = re.compile(r"^\s*(?P<key>[^\s!=]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s,]*)\s*$")


def _split_requirements(selector: str) -> list[str]:
    """Split on commas outside parentheses: `a in (x,y),b` -> [`a in (x,y)`, `b`]."""
    parts: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(selector):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(selector[start:index])
            start = index + 1
    parts.append(selector[start:])
    return [part.strip() for part in parts if part.strip()]


def labels_match(selector: str | None, labels: Mapping[str, str]) -> bool:
    """A label selector in Kubernetes' string form: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`."""
    for requirement in _split_requirements(selector or ""):
        if requirement.startswith("!"):
            if requirement[1:].strip() in labels:
                return False
        elif match := _SET_REQUIREMENT.match(requirement):
            values = {value.strip() for value in match["values"].split(",")}
            present = labels.get(match["key"])
            if match["op"] == "in" and present not in values:
                return False
            if match["op"] == "notin" and present in values:
                return False
        elif match := _EQUALITY_REQUIREMENT.match(requirement):
            present = labels.get(match["key"])
            if (match["op"] == "!=") == (present == match["value"]):
                return False
        elif requirement not in labels:
            return False
    return True


def fields_match(selector: str | None, obj: Mapping[str, Any]) -> bool:
    """A field selector: `path=value` / `path!=value` over dotted paths (`metadata.name`, `status.phase`)."""
    for requirement in _split_requirements(selector or ""):
        match = _EQUALITY_REQUIREMENT.match(requirement)
        if match is None:
            raise bad_request(f"unable to parse requirement: {requirement!r}")
        value: Any = obj
        for part in match["key"].split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        present = "" if value is None else str(value)
        if (match["op"] == "!=") == (present == match["value"]):
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise unprocessable(f"JSON pointer {path!r} does not start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(document: Any, parts: list[str]) -> tuple[Any, str]:
    node = document
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, parts[-1]


def json_patch(document: JsonObject, operations: Any) -> JsonObject:
    """RFC 6902 JSON patch with add, remove, replace and test (what kopf and kubectl send); 422 on failure."""
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        op, parts = operation.get("op"), _pointer(operation.get("path", ""))
        try:
            # The root itself is not a patchable location here: `None` makes any operation on it a 422.
            parent: Any
            parent, key = _parent(result, parts) if parts else (None, "")
            if op == "test":
                current = parent[int(key)] if isinstance(parent, list) else parent.get(key)
                if current != operation.get("value"):
                    raise unprocessable(f"the test operation on {operation['path']} failed")
            elif op == "remove":
                del parent[int(key) if isinstance(parent, list) else key]
            elif op in {"add", "replace"}:
                value = copy.deepcopy(operation.get("value"))
                if isinstance(parent, list):
                    index = len(parent) if key == "-" else int(key)
                    parent.insert(index, value) if op == "add" else parent.__setitem__(index, value)
                elif op == "replace" and key not in parent:
                    raise unprocessable(f"cannot replace missing path {operation['path']}")
                else:
                    parent[key] = value
            else:
                raise unprocessable(f"unsupported JSON patch operation {op!r}")
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as error:
            raise unprocessable(f"the JSON patch cannot apply at {operation.get('path')!r}: {error}") from None
    return result


# Errors in the Status shape clients decode (kopf's APIError subclasses, kubectl's messages).


def status_error(code: int, reason: str, message: str, details: JsonObject | None = None) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details or {})


def not_found(what: str, name: str) -> kmock.KubernetesError:
    return status_error(404, "NotFound", f'{what} "{name}" not found', {"name": name, "kind": what})


def already_exists(what: str, name: str) -> kmock.KubernetesError:
    return status_error(409, "AlreadyExists", f'{what} "{name}" already exists', {"name": name, "kind": what})


def conflict(what: str, name: str) -> kmock.KubernetesError:
    message = (
        f'Operation cannot be fulfilled on {what} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    return status_error(409, "Conflict", message, {"name": name, "kind": what})


def invalid(kind: str, name: str, causes: list[JsonObject]) -> kmock.KubernetesError:
    listed = ", ".join(f"{cause['field']}: {cause['message']}" for cause in causes)
    message = f'{kind} "{name}" is invalid: [{listed}]'
    return status_error(422, "Invalid", message, {"name": name, "kind": kind, "causes": causes})


def unprocessable(message: str) -> kmock.KubernetesError:
    return status_error(422, "Invalid", message)


def bad_request(message: str) -> kmock.KubernetesError:
    return status_error(400, "BadRequest", message)


def gone(message: str) -> kmock.KubernetesError:
    return status_error(410, "Expired", message)


# Server-side tables, for `kubectl get` of custom resources (its columns come from the CRD).


def human_duration(seconds: float) -> str:
    """apimachinery's `duration.HumanDuration`, the AGE column: 45s, 2m30s, 12m, 3h5m, 20h, 2d3h, 30d, 2y3d."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 120:
        return f"{max(whole, 0)}s"
    minutes = whole // 60
    if minutes < 10:
        return f"{minutes}m{whole % 60}s" if whole % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def human_age(created: str | None, *, now: datetime.datetime) -> str | None:
    """The time from `created` (an RFC 3339 stamp) to `now` as kubectl prints it; None without a stamp."""
    moment = parse_time(created)
    return None if moment is None else human_duration((now - moment).total_seconds())


def simple_json_path(obj: Mapping[str, Any], path: str) -> Any:
    """`.status.progress.summary` -> the value, None when a part is absent (printer columns use only these)."""
    value: Any = obj
    for part in path.lstrip(".").split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def printer_column_cells(obj: Mapping[str, Any], columns: Sequence[JsonObject], *, now: datetime.datetime) -> list[Any]:
    """One object's cells for a CRD's additionalPrinterColumns, as the API server fills them."""
    row: list[Any] = []
    for column in columns:
        value = simple_json_path(obj, column["jsonPath"])
        if value is not None and column.get("type") == "date":
            value = human_age(str(value), now=now)
        elif value is not None and column.get("type", "string") == "string":
            value = str(value)
        row.append(value)
    return row


def table(
    objects: list[JsonObject],
    *,
    columns: list[JsonObject],
    resource_version: str,
    now: datetime.datetime,
    include_object: str | None = None,
) -> JsonObject:
    """A meta.k8s.io/v1 Table as the API server builds it for a CRD's additionalPrinterColumns."""

    def cells(obj: JsonObject) -> list[Any]:
        return printer_column_cells(obj, columns, now=now)

    return printed_table(
        objects, columns=columns, cells=cells, resource_version=resource_version, include_object=include_object
    )


def printed_table(
    objects: list[JsonObject],
    *,
    columns: list[JsonObject],
    cells: Callable[[JsonObject], list[Any]],
    resource_version: str,
    include_object: str | None = None,
) -> JsonObject:
    """A meta.k8s.io/v1 Table: a Name column, then `columns`, one row of `cells(obj)` per object.

    When `columns` has a Name column of its own (events print it last, wide only), none is added.
    Each row carries its object as the `includeObject` parameter asks: `Metadata` (the default) a
    PartialObjectMetadata, `Object` the whole object (`kubectl get --sort-by` sorts on it), `None` none.
    """
    name_first = all(column["name"] != "Name" for column in columns)
    definitions = (
        [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
        if name_first
        else []
    )
    definitions += [
        {
            "name": column["name"],
            "type": column.get("type", "string"),
            "format": column.get("format", ""),
            "description": column.get("description", ""),
            "priority": column.get("priority", 0),
        }
        for column in columns
    ]
    rows = []
    for obj in objects:
        row: JsonObject = {"cells": [obj["metadata"]["name"], *cells(obj)] if name_first else cells(obj)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }


def wants_table(headers: Mapping[str, str]) -> bool:
    return "as=Table" in headers.get("Accept", "")


# Pods: graceful deletion and the log subresource, as the API server's pod strategy decides them.


def pod_grace_seconds(pod: Mapping[str, Any], *, requested: int | None) -> int:
    """The grace a pod DELETE gets: the request's, else the pod's `terminationGracePeriodSeconds`, else 30.

    As the API server's pod strategy: a pod no kubelet ever took (no `spec.nodeName`, no
    `status.phase`) or one already Succeeded/Failed has nothing to stop, so it goes at once (0).
    """
    status = pod.get("status") or {}
    if status.get("phase") in {"Succeeded", "Failed"}:
        return 0
    if not (pod.get("spec") or {}).get("nodeName") and not status.get("phase"):
        return 0
    if requested is not None:
        return max(requested, 0)
    declared = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return int(declared) if declared is not None else 30


def requested_grace_seconds(options: Mapping[str, Any], params: Mapping[str, str]) -> int | None:
    """`gracePeriodSeconds` from DeleteOptions (the body) or the query string; absent: None."""
    raw = options.get("gracePeriodSeconds", params.get("gracePeriodSeconds"))
    if raw is None:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise bad_request(f"gracePeriodSeconds must be an integer, not {raw!r}") from None


def log_container(pod: Mapping[str, Any], requested: str | None) -> str:
    """The container `GET pods/<name>/log` reads: `?container=`, or the only one; 400 as the API says."""
    name = pod["metadata"]["name"]
    containers: list[str] = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    if requested:
        if requested not in containers:
            raise bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    if len(containers) != 1:
        listed = " ".join(containers)
        raise bad_request(f"a container name must be specified for pod {name}, choose one of: [{listed}]")
    return containers[0]


def tail_lines(text: str, raw: str | None) -> str:
    """The last `tailLines` lines of a log (`kubectl logs --tail`), as the API server serves them.

    Absent or negative: all of it; 0: nothing; more lines than the log has: all of it (kubectl
    logs -l asks for 10 of each pod's lines).
    """
    if raw is None:
        return text
    try:
        count = int(raw)
    except ValueError:
        raise bad_request(f"tailLines must be an integer, not {raw!r}") from None
    if count < 0:
        return text
    lines = text.splitlines(keepends=True)
    return "".join(lines[-count:] if count else [])


def default_secret(secret: JsonObject) -> None:
    """The API server's defaults for a Secret, in place: `type` Opaque, `stringData` folded into `data`."""
    secret.setdefault("type", "Opaque")
    for key, value in (secret.pop("stringData", None) or {}).items():
        secret.setdefault("data", {})[key] = base64.b64encode(str(value).encode()).decode("ascii")
