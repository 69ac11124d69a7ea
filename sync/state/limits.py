"""Table Storage limits, enforced by our code because Azurite does not enforce them.

Service rules (Azure Table service data model): an entity is at most 1 MiB with at most 252
custom properties; a string property is at most 64 KiB (32K UTF-16 characters); an entity-group
transaction holds at most 100 operations on one PartitionKey and at most 4 MiB of payload.
Azurite accepts 253 properties, 1.2 MB entities and 4.8 MB batches, so tests against it would
never catch a breach: these checks are the only guard.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

MAX_ENTITY_BYTES = 1024 * 1024
MAX_PROPERTIES = 252
MAX_STRING_CHARS = 32 * 1024
MAX_BINARY_BYTES = 64 * 1024
MAX_BATCH_OPERATIONS = 100
MAX_BATCH_BYTES = 4 * 1024 * 1024
# Keep a margin below the hard limits: our size estimate is close but not the wire size.
ENTITY_BUDGET = MAX_ENTITY_BYTES - 64 * 1024
BATCH_BUDGET = MAX_BATCH_BYTES - 256 * 1024
CHUNK_CHARS = MAX_STRING_CHARS - 16  # per-property chunk of a large JSON value
_SYSTEM = frozenset({"PartitionKey", "RowKey", "Timestamp", "etag"})


class EntityTooLarge(ValueError):
    """An entity would break a Table Storage limit; nothing was written."""


def property_bytes(name: str, value: Any) -> int:
    """Approximate stored size of one property (name + value), per the service's formula:
    strings are UTF-16 (2 bytes/char) plus a small header."""
    size = 8 + 2 * len(name)
    if value is None:
        return size
    if isinstance(value, str):
        return size + 4 + 2 * len(value)
    if isinstance(value, bytes | bytearray):
        return size + 4 + len(value)
    if isinstance(value, bool):
        return size + 1
    if isinstance(value, int | float):
        return size + 8
    return size + 8 + 2 * len(str(value))


def entity_bytes(entity: Mapping[str, Any]) -> int:
    return 4 + sum(property_bytes(k, v) for k, v in entity.items())


def check_entity(entity: Mapping[str, Any]) -> None:
    """Raise EntityTooLarge if the entity breaks a service limit."""
    custom = [k for k in entity if k not in _SYSTEM]
    if len(custom) > MAX_PROPERTIES:
        raise EntityTooLarge(f"{len(custom)} properties; Table Storage allows {MAX_PROPERTIES}")
    for key, value in entity.items():
        if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            raise EntityTooLarge(f"property {key!r} has {len(value)} characters (max 32K)")
        if isinstance(value, bytes | bytearray) and len(value) > MAX_BINARY_BYTES:
            raise EntityTooLarge(f"property {key!r} has {len(value)} bytes (max 64 KiB)")
    size = entity_bytes(entity)
    if size > ENTITY_BUDGET:
        raise EntityTooLarge(f"entity is ~{size} bytes; Table Storage allows 1 MiB")


def pack_json(name: str, value: Any) -> dict[str, Any]:
    """Store a JSON value in one or more string properties (``name``, ``name__1``, ...),
    because a single property holds at most 32K characters."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    if len(text) <= CHUNK_CHARS:
        return {name: text, f"{name}__n": 1}
    parts = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]
    out: dict[str, Any] = {f"{name}__n": len(parts), name: parts[0]}
    for i, part in enumerate(parts[1:], start=1):
        out[f"{name}__{i}"] = part
    return out


def unpack_json(name: str, entity: Mapping[str, Any], default: Any = None) -> Any:
    if name not in entity or entity[name] is None:
        return default
    count = int(entity.get(f"{name}__n") or 1)
    text = str(entity[name]) + "".join(str(entity.get(f"{name}__{i}", "")) for i in range(1, count))
    return json.loads(text)


def pack_bytes(name: str, data: bytes) -> dict[str, Any]:
    """Store bytes in one or more binary properties (``name``, ``name__1``, ...; the count in
    ``name__n``), because a single one holds at most 64 KiB."""
    parts = [data[i : i + MAX_BINARY_BYTES] for i in range(0, len(data), MAX_BINARY_BYTES)]
    parts = parts or [b""]
    out: dict[str, Any] = {f"{name}__n": len(parts), name: parts[0]}
    for i, part in enumerate(parts[1:], start=1):
        out[f"{name}__{i}"] = part
    return out


def unpack_bytes(name: str, entity: Mapping[str, Any]) -> bytes:
    count = int(entity.get(f"{name}__n") or 1)
    parts = [entity.get(name)] + [entity.get(f"{name}__{i}") for i in range(1, count)]
    return b"".join(bytes(part or b"") for part in parts)


def pack_ints(values: Iterable[int]) -> bytes:
    """Non-negative integers, sorted, as the differences between neighbours in LEB128
    varints: ids close together (as a user's records are) take a byte or two each, where JSON
    takes seven or more characters (14+ bytes stored)."""
    out = bytearray()
    previous = 0
    for value in sorted(values):
        if value < 0:
            raise ValueError(f"cannot pack a negative id: {value}")
        delta, previous = value - previous, value
        while delta >= 0x80:
            out.append((delta & 0x7F) | 0x80)
            delta >>= 7
        out.append(delta)
    return bytes(out)


def unpack_ints(data: bytes, count: int, start: int = 0) -> tuple[list[int], int]:
    """``count`` integers packed by ``pack_ints`` from ``data[start:]``, and where they end."""
    values: list[int] = []
    previous, at = 0, start
    for _ in range(count):
        delta = shift = 0
        while True:
            if at >= len(data):
                raise ValueError("packed ids end early")
            byte = data[at]
            at += 1
            delta |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        previous += delta
        values.append(previous)
    return values, at


def chunk_batch(
    operations: Iterable[tuple[str, Mapping[str, Any]]],
) -> Iterator[list[tuple[str, Mapping[str, Any]]]]:
    """Split (verb, entity) operations into transactions that respect the 100-operation and
    4 MiB limits.  Every entity must share one PartitionKey (the caller groups by partition)."""
    batch: list[tuple[str, Mapping[str, Any]]] = []
    batch_size = 0
    partition: str | None = None
    for verb, entity in operations:
        check_entity(entity)
        pk = str(entity["PartitionKey"])
        if partition is None:
            partition = pk
        elif pk != partition:
            raise ValueError("a transaction may only touch one PartitionKey")
        size = entity_bytes(entity) + 512  # multipart framing per operation
        if batch and (len(batch) >= MAX_BATCH_OPERATIONS or batch_size + size > BATCH_BUDGET):
            yield batch
            batch, batch_size = [], 0
        batch.append((verb, entity))
        batch_size += size
    if batch:
        yield batch
