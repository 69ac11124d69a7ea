"""Indexing a v2 ``FunctionApp`` the way the worker does: import the module, find its one
``FunctionApp``, call ``get_functions()`` and read each function's binding JSON."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from azure.functions.decorators.function_app import FunctionRegister

HTTP_TRIGGER = "httpTrigger"
TIMER_TRIGGER = "timerTrigger"
QUEUE_TRIGGER = "queueTrigger"
SUPPORTED_TRIGGERS = {HTTP_TRIGGER, TIMER_TRIGGER, QUEUE_TRIGGER}


class FunctionLoadError(RuntimeError):
    """The function app cannot be imported or indexed."""


@dataclass(frozen=True)
class LoadedFunction:
    name: str
    user_function: Callable[..., Any]
    is_async: bool
    trigger: dict[str, Any]
    queue_outputs: tuple[dict[str, Any], ...]
    wants_context: bool
    bindings: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def trigger_arg(self) -> str:
        return str(self.trigger["name"])


@dataclass(frozen=True)
class IndexedApp:
    module: ModuleType
    functions: dict[str, LoadedFunction]
    skipped: dict[str, str]  # function name → why the local host cannot run it


def import_app_module(module_path: str) -> ModuleType:
    """``function_app`` (a module name) or ``/path/to/function_app.py`` (a file)."""
    if module_path.endswith(".py") or "/" in module_path:
        path = Path(module_path).resolve()
        if not path.exists():
            raise FunctionLoadError(f"no such file: {path}")
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        name = f"_localhost_app_{path.stem}_{uuid.uuid4().hex[:8]}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise FunctionLoadError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_path)
    except ImportError as exc:
        raise FunctionLoadError(f"cannot import {module_path!r}: {exc}") from exc


def find_app(module: ModuleType) -> FunctionRegister:
    """The worker indexes the module's single FunctionApp (any FunctionRegister)."""
    preferred = getattr(module, "app", None)
    if isinstance(preferred, FunctionRegister):
        return preferred
    apps = [v for v in vars(module).values() if isinstance(v, FunctionRegister)]
    if len(apps) != 1:
        raise FunctionLoadError(
            f"{module.__name__}: expected exactly one FunctionApp at module level, "
            f"found {len(apps)}"
        )
    return apps[0]


def index_app(module: ModuleType) -> IndexedApp:
    app = find_app(module)
    # get_functions() records names in app.functions_bindings and refuses to run twice on one
    # app (ValueError "does not have a unique function name").  Index on a clean slate and put
    # the record back afterwards, so several hosts (tests) can index the same imported module
    # and code that calls get_functions() itself is not affected by us.
    previous = app.functions_bindings
    app.functions_bindings = None
    try:
        functions = app.get_functions()
    except ValueError as exc:
        raise FunctionLoadError(f"indexing failed: {exc}") from exc
    finally:
        app.functions_bindings = previous
    loaded: dict[str, LoadedFunction] = {}
    skipped: dict[str, str] = {}
    for function in functions:
        name = str(function.get_function_name())
        bindings = json.loads(function.get_function_json())["bindings"]
        try:
            loaded[name] = _describe(name, function.get_user_function(), bindings)
        except FunctionLoadError as exc:
            skipped[name] = str(exc)
    return IndexedApp(module=module, functions=loaded, skipped=skipped)


def _describe(
    name: str, user_function: Callable[..., Any], bindings: Iterable[Any]
) -> LoadedFunction:
    trigger: dict[str, Any] | None = None
    outputs: list[dict[str, Any]] = []
    all_bindings: list[dict[str, Any]] = []
    for raw in bindings:
        b = dict(raw)
        all_bindings.append(b)
        kind = b.get("type")
        direction = str(b.get("direction", "")).upper()
        if kind in SUPPORTED_TRIGGERS:
            trigger = b
        elif kind == "http" and direction == "OUT":
            continue  # the $return of an HTTP trigger
        elif kind == "queue" and direction == "OUT":
            outputs.append(b)
        else:
            raise FunctionLoadError(
                f"{name}: binding {b.get('name')!r} of type {kind!r} ({direction}) is not "
                "supported by the local host"
            )
    if trigger is None:
        raise FunctionLoadError(f"{name}: no supported trigger (http, timer, queue)")
    try:
        params = inspect.signature(user_function).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    bound = {str(b["name"]) for b in all_bindings}
    return LoadedFunction(
        name=name,
        user_function=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        trigger=trigger,
        queue_outputs=tuple(outputs),
        wants_context="context" in params and "context" not in bound,
        bindings=tuple(all_bindings),
    )
