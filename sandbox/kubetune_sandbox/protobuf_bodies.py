"""The protobuf bodies kubectl sends for built-in kinds, read into the JSON objects the emulator stores.

kubectl (client-go) writes built-in objects as `application/vnd.kubernetes.protobuf`: `kubectl
create secret generic --from-literal` and `kubectl create configmap` POST such a body, and
client-go 1.32 does not fall back to JSON when the server refuses it. The body is the API
machinery's envelope, the magic `k8s\\0` then a `runtime.Unknown` (typeMeta: apiVersion, kind;
raw: the object's own message), read here with the field numbers of k8s.io/api's generated.proto.

Read: Secret (metadata, data, type, stringData, immutable) and ConfigMap (metadata, data,
binaryData, immutable), with ObjectMeta's name, generateName, namespace, labels, annotations and
finalizers. Any other kind, or a field of ObjectMeta outside those, is a 415 naming the kind, so
nothing kubectl sent is silently dropped.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

from .apimachinery import JsonObject, status_error

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
Field = tuple[int, int, Any]
"""(field number, wire type, value): an int for varints and fixed widths, bytes for length-delimited."""


class ProtobufError(ValueError):
    """A body that is not the protobuf kubectl writes."""


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data):
            raise ProtobufError("the body ends inside a varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise ProtobufError("a varint longer than 64 bits")


def fields(data: bytes) -> Iterator[Field]:
    """The fields of one protobuf message, in order."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, at = _varint(data, at)
            yield number, wire, value
        elif wire == _BYTES:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise ProtobufError(f"field {number} runs past the end of the body")
            yield number, wire, data[at : at + size]
            at += size
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            yield number, wire, int.from_bytes(data[at : at + width], "little")
            at += width
        else:
            raise ProtobufError(f"field {number} has wire type {wire}, which protobuf 3 never writes")


def _text(value: Any) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError("a string field is not length-delimited")
    return value.decode("utf-8")


def _entry(value: Any) -> tuple[str, bytes]:
    """One map entry (key = 1, value = 2), with its value as bytes."""
    if not isinstance(value, bytes):
        raise ProtobufError("a map entry is not length-delimited")
    key, item = "", b""
    for number, _, part in fields(value):
        if number == 1:
            key = _text(part)
        elif number == 2:
            item = part if isinstance(part, bytes) else b""
    return key, item


def _object_meta(data: bytes) -> JsonObject:
    meta: JsonObject = {}
    for number, _, value in fields(data):
        if value in (b"", 0):
            continue  # protobuf writes unset strings, numbers and timestamps as empty or zero
        if number in (1, 2, 3):
            meta[("name", "generateName", "namespace")[number - 1]] = _text(value)
        elif number in (11, 12):
            key, item = _entry(value)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = item.decode("utf-8")
        elif number == 14:
            meta.setdefault("finalizers", []).append(_text(value))
        else:
            raise ProtobufError(f"metadata field {number} is not read by the sandbox")
    return meta


def _secret(data: bytes) -> JsonObject:
    body: JsonObject = {}
    for number, wire, value in fields(data):
        if number == 1:
            body["metadata"] = _object_meta(value)
        elif number in (2, 4):
            key, item = _entry(value)
            if number == 2:
                body.setdefault("data", {})[key] = base64.b64encode(item).decode("ascii")
            else:
                body.setdefault("stringData", {})[key] = item.decode("utf-8")
        elif number == 3:
            if text := _text(value):
                body["type"] = text
        elif number == 5 and wire == _VARINT:
            body["immutable"] = bool(value)
        else:
            raise ProtobufError(f"Secret field {number} is not read by the sandbox")
    return body


def _config_map(data: bytes) -> JsonObject:
    body: JsonObject = {}
    for number, wire, value in fields(data):
        if number == 1:
            body["metadata"] = _object_meta(value)
        elif number == 2:
            key, item = _entry(value)
            body.setdefault("data", {})[key] = item.decode("utf-8")
        elif number == 3:
            key, item = _entry(value)
            body.setdefault("binaryData", {})[key] = base64.b64encode(item).decode("ascii")
        elif number == 4 and wire == _VARINT:
            body["immutable"] = bool(value)
        else:
            raise ProtobufError(f"ConfigMap field {number} is not read by the sandbox")
    return body


_READERS: dict[tuple[str, str], Callable[[bytes], JsonObject]] = {
    ("v1", "Secret"): _secret,
    ("v1", "ConfigMap"): _config_map,
}


def envelope(body: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, raw) of a `k8s\\0` + runtime.Unknown body."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic k8s\\0")
    api_version = kind = ""
    raw = b""
    for number, _, value in fields(body[len(MAGIC) :]):
        if number == 1:
            for part, _, text in fields(value):
                if part == 1:
                    api_version = _text(text)
                elif part == 2:
                    kind = _text(text)
        elif number == 2 and isinstance(value, bytes):
            raw = value
    return api_version, kind, raw


def read_object(body: bytes) -> JsonObject:
    """The JSON object a protobuf body carries; a 415 Status for what the sandbox cannot read."""
    try:
        api_version, kind, raw = envelope(body)
        reader = _READERS.get((api_version, kind))
        if reader is None:
            readable = ", ".join(k for _, k in _READERS)
            raise ProtobufError(f"{kind or 'an object'} ({api_version or 'no apiVersion'}) is not one of {readable}")
        return {"apiVersion": api_version, "kind": kind, **reader(raw)}
    except (ProtobufError, UnicodeDecodeError) as error:
        message = f"the sandbox reads protobuf bodies only for Secret and ConfigMap; send JSON instead: {error}"
        raise status_error(415, "UnsupportedMediaType", message) from None
