"""host.json for the local host: the handful of settings it honours, with the real host's
defaults, plus ``AzureFunctionsJobHost__path__to__setting`` overrides from the environment
(the same override mechanism the real host has)."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_OVERRIDE_PREFIX = "AzureFunctionsJobHost__"
_TIMESPAN = re.compile(r"^(?:(?P<d>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)$")


class HostConfigError(ValueError):
    """host.json (or an override) cannot be understood."""


def parse_timespan(value: Any, *, number_unit_seconds: float = 0.001) -> float:
    """A .NET TimeSpan (``[d.]hh:mm:ss[.fff]``) in seconds.  Plain numbers are taken as
    milliseconds, as in the older host.json schema (``maxPollingInterval: 2000``)."""
    if isinstance(value, bool):
        raise HostConfigError(f"expected a time span like '00:00:30', got {value!r}")
    if isinstance(value, int | float):
        return float(value) * number_unit_seconds
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return float(text) * number_unit_seconds
        match = _TIMESPAN.match(text)
        if match:
            days = int(match.group("d") or 0)
            return (
                days * 86_400
                + int(match.group("h")) * 3600
                + int(match.group("m")) * 60
                + float(match.group("s"))
            )
    raise HostConfigError(f"expected a time span like '00:00:30', got {value!r}")


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` with the storage extension's defaults (5.x)."""

    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @property
    def max_concurrency(self) -> int:
        """Messages one queue function may work on at once: batchSize + newBatchThreshold."""
        return self.batch_size + self.new_batch_threshold


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()
    function_timeout: float | None = None
    raw: Mapping[str, Any] | None = None

    @classmethod
    def load(
        cls,
        source: str | Path | Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> HostConfig:
        """From a host.json path, an already-parsed dict, or (None) ``./host.json`` if present."""
        if isinstance(source, Mapping):
            data: dict[str, Any] = copy.deepcopy(dict(source))
        elif source is None and not Path("host.json").exists():
            data = {}
        else:
            path = Path("host.json" if source is None else source)
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise HostConfigError(f"cannot read host.json at {source or path}: {exc}") from exc
        data = apply_overrides(data, os.environ if environ is None else environ)
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostConfig:
        extensions = _get(data, "extensions") or {}
        http = _get(extensions, "http") or {}
        prefix = _get(http, "routePrefix")
        route_prefix = "api" if prefix is None else str(prefix).strip("/")

        q = _get(extensions, "queues") or {}
        batch_size = _int(q, "batchSize", 16, 1, 32)
        threshold_default = batch_size // 2
        encoding = str(_get(q, "messageEncoding") or "base64").lower()
        if encoding not in {"base64", "none"}:
            raise HostConfigError("extensions.queues.messageEncoding must be 'base64' or 'none'")
        queues = QueueOptions(
            max_polling_interval=_span(q, "maxPollingInterval", 60.0),
            visibility_timeout=_span(q, "visibilityTimeout", 0.0),
            batch_size=batch_size,
            new_batch_threshold=_int(q, "newBatchThreshold", threshold_default, 0, 1000),
            max_dequeue_count=_int(q, "maxDequeueCount", 5, 1, 1_000_000),
            message_encoding=encoding,
        )
        if queues.max_polling_interval < 0.1:
            raise HostConfigError("extensions.queues.maxPollingInterval must be at least 100 ms")
        timeout = _get(data, "functionTimeout")
        function_timeout = None
        if timeout not in (None, "", -1, "-1"):
            function_timeout = parse_timespan(timeout)
        return cls(
            route_prefix=route_prefix,
            queues=queues,
            function_timeout=function_timeout,
            raw=data,
        )


def apply_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``AzureFunctionsJobHost__extensions__queues__maxDequeueCount=2`` sets that path.
    Keys match case-insensitively, as in .NET configuration."""
    for name, value in environ.items():
        if not name.startswith(_OVERRIDE_PREFIX):
            continue
        path = [p for p in name[len(_OVERRIDE_PREFIX) :].split("__") if p]
        if not path:
            continue
        node = data
        for part in path[:-1]:
            key = _find_key(node, part) or part
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[_find_key(node, path[-1]) or path[-1]] = value
    return data


def _find_key(node: Mapping[str, Any], name: str) -> str | None:
    for key in node:
        if key.lower() == name.lower():
            return key
    return None


def _get(node: Any, name: str) -> Any:
    if not isinstance(node, Mapping):
        return None
    key = _find_key(node, name)
    return None if key is None else node[key]


def _int(node: Any, name: str, default: int, low: int, high: int) -> int:
    value = _get(node, name)
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise HostConfigError(
            f"extensions.queues.{name} must be an integer, got {value!r}"
        ) from None
    if not low <= number <= high:
        raise HostConfigError(f"extensions.queues.{name} must be between {low} and {high}")
    return number


def _span(node: Any, name: str, default: float) -> float:
    value = _get(node, name)
    if value is None:
        return default
    try:
        return parse_timespan(value)
    except HostConfigError as exc:
        raise HostConfigError(f"extensions.queues.{name}: {exc}") from None
