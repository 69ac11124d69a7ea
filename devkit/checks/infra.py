"""Keep the code and the infrastructure templates in step, offline.

``check_infra(repo_root)`` parses every Bicep file under ``infra/`` with pycep-parser (syntax only:
no type checking, no ARM output; compiling and what-if need the Bicep CLI and Azure access) and
compares what it finds with what the code reads and uses:

* **settings** - every variable in ``sync.settings.settings_catalogue()`` is set in the templates'
  app settings, or listed in ``infra/optional-settings.txt`` with a reason.  A setting without a
  default may only be left out if the list names the settings that replace it and those are set
  (``AzureWebJobsStorage -> AzureWebJobsStorage__tableServiceUri, ...``).  Settings in the
  templates that the code does not read must be listed in ``infra/platform-settings.txt`` (host,
  App Insights, azure-identity), so a misspelt name is caught.  Values that can be worked out
  from the template (literals, parameter defaults, variables) are validated with the same
  pydantic models the app uses, so a five-field cron default fails here, not at start-up.
* **secrets** - secret settings are Key Vault references, never values; the site sets
  ``keyVaultReferenceIdentity``; no account keys or ``listKeys()`` in the templates.
* **tables and queues** - every table in ``sync.state.tables.TABLES`` (with the template's
  ``SYNC_TABLE_PREFIX``) and the jobs queue plus its ``-poison`` queue are created; every
  ``%SETTING%``, ``connection=`` and ``queue_name=`` in the trigger declarations
  (``function_app.py``, ``sync/blueprints/``) is backed by the templates.
* **platform** - Flex Consumption (FC1) running Python 3.11 with a user-assigned identity, no
  settings that Flex rejects, Key Vault in RBAC mode, workspace-based Application Insights,
  the least-privilege role assignments for the identity and no broad roles, and the outputs the
  docs use (webhook URLs).
* **parameters file** - ``infra/main.parameters.json`` is JSON, names only existing parameters
  and supplies every parameter without a default; ``principalType`` travels with
  ``principalId``; an azd placeholder default (``${VAR=default}``) is an allowed value.
* **limits Azure enforces** - the jobs queue parameter leaves room for ``-poison`` within
  Azure's 63 characters and agrees with the app's own limit; Flex instance memory is 2048 or
  4096 MB.
* **host.json** - every invocation reaches the ``requests`` table (``Host.Results`` at
  Information, requests and traces never sampled) and each function's own log lines pass at the
  level ``SYNC_LOG_LEVEL`` chooses (``Function.<name>.User`` at Debug), with the host's
  per-invocation chatter (``Function``) at Warning.
* **alerts** - the log alerts name only functions the code declares and the template's poison
  queue, cover the four signals operators rely on (poison, failing mailbox, missed
  reconciliation, webhook 5xx), notify the action group, and the missed-reconciliation window
  spans at least two intervals of the reconcile schedule.

Run it as ``python -m devkit.checks.infra``; ``tests/test_infra.py`` runs it in the suite.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from lark.exceptions import LarkError, UnexpectedInput
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

MAIN_TEMPLATE = "main.bicep"
PARAMETERS_FILE = "main.parameters.json"
OPTIONAL_SETTINGS_FILE = "optional-settings.txt"
PLATFORM_SETTINGS_FILE = "platform-settings.txt"
TRIGGER_SOURCES = ("function_app.py", "sync/blueprints")

SITES = "Microsoft.Web/sites"
SITE_CONFIG = "Microsoft.Web/sites/config"
PLAN = "Microsoft.Web/serverfarms"
TABLE = "Microsoft.Storage/storageAccounts/tableServices/tables"
QUEUE = "Microsoft.Storage/storageAccounts/queueServices/queues"
STORAGE = "Microsoft.Storage/storageAccounts"
KEY_VAULT = "Microsoft.KeyVault/vaults"
APP_INSIGHTS = "Microsoft.Insights/components"
IDENTITY = "Microsoft.ManagedIdentity/userAssignedIdentities"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
QUERY_RULE = "Microsoft.Insights/scheduledQueryRules"
ACTION_GROUP = "Microsoft.Insights/actionGroups"

# Azure's limit on queue names; the poison queue is the jobs queue's name plus a suffix.
AZURE_QUEUE_NAME_MAX = 63
# Instance memory sizes Flex Consumption accepts (functionAppConfig.scaleAndConcurrency).
FLEX_INSTANCE_MEMORY_MB = frozenset({2048, 4096})
# host.json log levels, lowest first (Microsoft.Extensions.Logging.LogLevel).
LOG_LEVELS = ("Trace", "Debug", "Information", "Warning", "Error", "Critical", "None")
# What each required alert is recognised by in its query; see _check_alerts.
REQUIRED_ALERTS: Mapping[str, str] = {
    "poison": "the poison queue's name",
    "failing mailbox": 'the worker\'s per-job line (startswith "job ")',
    "missed reconciliation": "reconcile_timer",
    "webhook 5xx": "graph_notifications",
}

# Built-in roles the app's user-assigned identity needs, and nothing broader.
REQUIRED_APP_ROLES: Mapping[str, str] = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
FORBIDDEN_ROLES: Mapping[str, str] = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
}
# Settings a Flex Consumption app must not carry (the runtime is a site property there; content
# shares and run-from-package do not exist), and the connection-string form of host storage
# (the account disables shared keys; the identity-based AzureWebJobsStorage__* form is used).
FORBIDDEN_SETTINGS: Mapping[str, str] = {
    "FUNCTIONS_WORKER_RUNTIME": "Flex sets the runtime in functionAppConfig.runtime",
    "FUNCTIONS_EXTENSION_VERSION": "not used on Flex Consumption",
    "WEBSITE_RUN_FROM_PACKAGE": "Flex deploys from functionAppConfig.deployment.storage",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING": "Flex has no content file share",
    "WEBSITE_CONTENTSHARE": "Flex has no content file share",
    "AzureWebJobsStorage": "use the identity-based AzureWebJobsStorage__* settings",
}
# Outputs the docs rely on, and the path each must end with.
REQUIRED_OUTPUTS: Mapping[str, str] = {
    "GRAPH_NOTIFICATION_URL": "/api/graph/notifications",
    "GRAPH_LIFECYCLE_URL": "/api/graph/lifecycle",
    "SYNC_PUBLIC_BASE_URL": "",
    "AZURE_FUNCTION_APP_NAME": "",
    "AZURE_KEY_VAULT_NAME": "",
    "AZURE_STORAGE_ACCOUNT_NAME": "",
}
SECRET_PATTERNS = (
    re.compile(r"AccountKey=", re.IGNORECASE),
    re.compile(r"SharedAccessSignature=", re.IGNORECASE),
    re.compile(r"\blistKeys\s*\("),
    re.compile(r"\blistSecrets\s*\("),
    re.compile(r"InstrumentationKey=[0-9a-f]{8}-", re.IGNORECASE),
)
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("
_AZD_DEFAULT = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*=(?P<default>[^}]*)\}")
_PERCENT_SETTING = re.compile(r"^%([A-Za-z_][A-Za-z0-9_]*)%$")
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ROLE_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Problem:
    """One inconsistency: where it is (file[:line]) and what is wrong."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class BicepSyntaxError(Exception):
    """A Bicep file does not parse."""

    def __init__(self, path: Path, line: int | None, column: int | None, detail: str) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.detail = detail
        where = f"{path}:{line}:{column}" if line is not None else str(path)
        super().__init__(f"{where}: {detail}")


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _parser() -> Any:
    from pycep import BicepParser

    return BicepParser(add_line_numbers=True)


def parse_bicep(path: Path) -> dict[str, Any]:
    """Parse one Bicep file into pycep's dict form; raise ``BicepSyntaxError`` on bad syntax."""
    text = path.read_text(encoding="utf-8")
    try:
        parsed = _parser().parse(text=text)
    except UnexpectedInput as exc:
        first = str(exc).strip().splitlines()
        raise BicepSyntaxError(path, exc.line, exc.column, first[0] if first else "") from None
    except (LarkError, ValueError) as exc:
        raise BicepSyntaxError(path, None, None, str(exc) or type(exc).__name__) from None
    if not isinstance(parsed, dict):  # pragma: no cover - pycep always returns a dict
        raise BicepSyntaxError(path, None, None, "parser returned no document")
    return dict(parsed)


class _Unresolvable(Exception):
    """An expression whose value is only known at deployment time."""


@dataclass(frozen=True)
class AppSetting:
    name: str
    expr: Any
    where: str


@dataclass
class Template:
    """One parsed Bicep file plus the bits of evaluation the checks need."""

    path: Path
    data: dict[str, Any]
    label: str
    text: str = ""

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.data.get("parameters") or {})

    @property
    def variables(self) -> dict[str, Any]:
        return dict(self.data.get("variables") or {})

    @property
    def resources(self) -> dict[str, Any]:
        return dict(self.data.get("resources") or {})

    @property
    def outputs(self) -> dict[str, Any]:
        return dict(self.data.get("outputs") or {})

    def where(self, node: Mapping[str, Any] | None = None) -> str:
        line = node.get("__start_line__") if node else None
        return f"{self.label}:{line}" if line else self.label

    def where_key(self, key: str, node: Mapping[str, Any]) -> str:
        """Line of ``key:`` inside a resource (pycep only records lines per resource)."""
        start = node.get("__start_line__")
        end = node.get("__end_line__")
        if not (isinstance(start, int) and isinstance(end, int)):
            return self.where(node)
        pattern = re.compile(rf"^\s*'?{re.escape(key)}'?\s*:")
        lines = self.text.splitlines()
        for number in range(start, min(end, len(lines)) + 1):
            if pattern.match(lines[number - 1]):
                return f"{self.label}:{number}"
        return self.where(node)

    # -- evaluation ---------------------------------------------------------------------------

    def resolve(self, expr: Any, local: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
        """Value of an expression if the template alone determines it (literals, parameter
        defaults, variables, interpolation, ``empty()`` conditions); else ``_Unresolvable``.

        pycep writes identifiers and string literals the same way, so a bare string that names a
        parameter, variable or loop item is read as a reference to it.
        """
        if depth > 20:
            raise _Unresolvable("expression nests too deeply")
        local = local or {}
        if isinstance(expr, bool | int | float) or expr is None:
            return expr
        if isinstance(expr, list):
            return [self.resolve(item, local, depth + 1) for item in expr]
        if isinstance(expr, str):
            return self._resolve_str(expr, local, depth)
        if isinstance(expr, dict):
            # pycep writes `a ? b : c` as {"operator": {...}}; an object literal may have a
            # property called operator too (log alert criteria), whose value is not a dict.
            if isinstance(expr.get("operator"), dict):
                return self._resolve_operator(expr["operator"], local, depth)
            if isinstance(expr.get("function"), dict):
                return self._resolve_function(expr["function"], local, depth)
            return {
                k: self.resolve(v, local, depth + 1)
                for k, v in expr.items()
                if not k.startswith("__")
            }
        raise _Unresolvable(repr(expr))

    def _resolve_str(self, text: str, local: Mapping[str, Any], depth: int) -> Any:
        if _IDENTIFIER.match(text):
            if text in local:
                return local[text]
            params, variables = self.params, self.variables
            if text in params:
                default = params[text].get("default")
                if default is None:
                    raise _Unresolvable(f"parameter {text} has no default")
                return self.resolve(default, local, depth + 1)
            if text in variables:
                return self.resolve(variables[text].get("value"), local, depth + 1)
            if text in self.resources:
                raise _Unresolvable(f"resource {text}")
            return text
        if "${" not in text:
            return text

        def substitute(match: re.Match[str]) -> str:
            inner = match.group(1).strip()
            if not _IDENTIFIER.match(inner):
                raise _Unresolvable(inner)
            value = self._resolve_str(inner, local, depth + 1)
            if isinstance(value, dict | list):
                raise _Unresolvable(inner)
            return str(value)

        return _INTERPOLATION.sub(substitute, text)

    def _resolve_operator(self, op: Mapping[str, Any], local: Mapping[str, Any], depth: int) -> Any:
        kind = op.get("type")
        operands = op.get("operands") or {}
        if kind == "conditional":
            condition = self.resolve(operands.get("condition"), local, depth + 1)
            if not isinstance(condition, bool):
                raise _Unresolvable("condition")
            branch = operands.get("true_value" if condition else "false_value")
            return self.resolve(branch, local, depth + 1)
        if kind == "not":
            value = self.resolve(operands.get("bool_value"), local, depth + 1)
            if not isinstance(value, bool):
                raise _Unresolvable("not")
            return not value
        if kind == "property_accessor":
            base = self.resolve(operands.get("operand_1"), local, depth + 1)
            key = operands.get("operand_2")
            if isinstance(base, dict) and isinstance(key, str) and key in base:
                return base[key]
            raise _Unresolvable(render(op))
        raise _Unresolvable(str(kind))

    def _resolve_function(self, fn: Mapping[str, Any], local: Mapping[str, Any], depth: int) -> Any:
        kind = fn.get("type")
        params = fn.get("parameters") or {}
        if kind == "empty":
            value = self.resolve(params.get("item_to_test"), local, depth + 1)
            return value is None or (isinstance(value, str | list | dict) and len(value) == 0)
        if kind == "format":
            # format('{0}-{1}', a, b): .NET composite formatting, positional arguments only.
            template = self.resolve(params.get("format_string"), local, depth + 1)
            args = [
                self.resolve(v, local, depth + 1) for k, v in params.items() if k.startswith("arg_")
            ]
            if not isinstance(template, str) or any(isinstance(a, dict | list) for a in args):
                raise _Unresolvable("format")
            return re.sub(r"\{(\d+)\}", lambda m: str(args[int(m[1])]), template)
        if kind in ("subscription_resource_id", "resource_id", "tenant_resource_id"):
            # roleDefinitionId = subscriptionResourceId('...roleDefinitions', <guid>): the guid
            # is what the role checks need.
            return self.resolve(params.get("resource_name_1"), local, depth + 1)
        raise _Unresolvable(str(kind))

    def try_resolve(self, expr: Any, local: Mapping[str, Any] | None = None) -> Any:
        try:
            return self.resolve(expr, local)
        except _Unresolvable:
            return None

    # -- structure ----------------------------------------------------------------------------

    def resources_of(self, rtype: str) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(symbol, resource node, body) for every resource of one type; the body is the object
        after any ``if (...)`` condition or ``for`` loop wrapper."""
        for symbol, node in self.resources.items():
            if isinstance(node, dict) and node.get("type", "").lower() == rtype.lower():
                yield symbol, node, body_of(node)

    def loop_bindings(self, node: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Local bindings for each copy of a resource (one empty binding if it does not loop)."""
        config = node.get("config") or {}
        loop = config.get("loop_type") if isinstance(config, dict) else None
        if not loop:
            return [{}]
        detail = loop.get("detail") or {}
        item = detail.get("item_name")
        array = self.resolve(detail.get("array_name"))
        if loop.get("type") != "array" or not isinstance(item, str) or not isinstance(array, list):
            raise _Unresolvable("loop")
        return [{item: value} for value in array]

    def resource_names(self, rtype: str) -> tuple[set[str], list[Problem]]:
        names: set[str] = set()
        problems: list[Problem] = []
        for symbol, node, body in self.resources_of(rtype):
            try:
                for local in self.loop_bindings(node):
                    value = self.resolve(body.get("name"), local)
                    if not isinstance(value, str):
                        raise _Unresolvable("name")
                    names.add(value)
            except _Unresolvable:
                problems.append(
                    Problem(
                        self.where(node),
                        f"cannot work out the name(s) of {symbol} ({rtype}) from the template; "
                        "use literals, parameter defaults or variables so the check can follow",
                    )
                )
        return names, problems

    def app_settings(self) -> dict[str, AppSetting]:
        """App settings from ``Microsoft.Web/sites/config`` 'appsettings' resources and from
        ``siteConfig.appSettings`` arrays of sites."""
        found: dict[str, AppSetting] = {}
        for _symbol, node, body in self.resources_of(SITE_CONFIG):
            if self.try_resolve(body.get("name")) != "appsettings":
                continue
            props = body.get("properties")
            if isinstance(props, dict):
                for key, value in props.items():
                    if not key.startswith("__"):
                        name = key.strip("'")
                        found[name] = AppSetting(name, value, self.where_key(name, node))
        for _symbol, _node, body in self.resources_of(SITES):
            site_config = (body.get("properties") or {}).get("siteConfig") or {}
            entries = site_config.get("appSettings") if isinstance(site_config, dict) else None
            if isinstance(entries, list):
                for entry in entries:
                    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                        name = entry["name"]
                        found[name] = AppSetting(name, entry.get("value"), self.where(entry))
        return found


def body_of(node: Mapping[str, Any]) -> dict[str, Any]:
    config = node.get("config") or {}
    while isinstance(config, dict) and ("loop_type" in config or "condition" in config):
        config = config.get("config") or {}
    return dict(config) if isinstance(config, dict) else {}


def render(expr: Any) -> str:
    """Bicep-like text of an expression, for messages and reference checks."""
    if isinstance(expr, dict):
        if isinstance(expr.get("operator"), dict):
            op = expr["operator"]
            operands = op.get("operands") or {}
            if op.get("type") == "property_accessor":
                return f"{render(operands.get('operand_1'))}.{render(operands.get('operand_2'))}"
            return f"{op.get('type')}({', '.join(render(v) for v in operands.values())})"
        if isinstance(expr.get("function"), dict):
            fn = expr["function"]
            args = ", ".join(render(v) for v in (fn.get("parameters") or {}).values() if v)
            return f"{fn.get('type')}({args})"
        return "{...}"
    if isinstance(expr, list):
        return "[...]"
    return str(expr)


# ---------------------------------------------------------------------------------------------
# Allowlist files
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListedSetting:
    name: str
    reason: str
    replaced_by: tuple[str, ...]
    where: str


def read_setting_list(path: Path, label: str) -> tuple[dict[str, ListedSetting], list[Problem]]:
    """Parse ``NAME: reason`` / ``NAME -> OTHER, OTHER: reason`` lines (``#`` comments)."""
    entries: dict[str, ListedSetting] = {}
    problems: list[Problem] = []
    if not path.exists():
        return entries, problems
    line_re = re.compile(
        r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?:->\s*(?P<alts>[^:]+))?:\s*(?P<reason>.*)$"
    )
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{label}:{number}"
        match = line_re.match(line)
        if not match:
            problems.append(Problem(where, "expected 'NAME: reason' or 'NAME -> OTHER: reason'"))
            continue
        name, reason = match["name"], match["reason"].strip()
        alts = tuple(a.strip() for a in (match["alts"] or "").split(",") if a.strip())
        if len(reason) < 10:
            problems.append(Problem(where, f"{name}: give a reason (why it is left out / set)"))
        if name in entries:
            problems.append(Problem(where, f"{name} is listed twice"))
        entries[name] = ListedSetting(name, reason, alts, where)
    return entries, problems


# ---------------------------------------------------------------------------------------------
# Trigger declarations in the Python sources
# ---------------------------------------------------------------------------------------------


@dataclass
class TriggerRefs:
    settings: dict[str, list[str]] = field(default_factory=dict)  # %NAME% -> locations
    connections: dict[str, list[str]] = field(default_factory=dict)
    queues: dict[str, list[str]] = field(default_factory=dict)  # literal or %NAME%
    functions: dict[str, list[str]] = field(default_factory=dict)  # @function_name("...")


def scan_trigger_sources(root: Path, sources: Iterable[str] = TRIGGER_SOURCES) -> TriggerRefs:
    refs = TriggerRefs()
    files: list[Path] = []
    for rel in sources:
        path = root / rel
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(sorted(path.rglob("*.py")))
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError:
            continue  # the linters report this; nothing to compare
        label = str(path.relative_to(root))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = _PERCENT_SETTING.match(node.value)
                if match:
                    refs.settings.setdefault(match[1], []).append(f"{label}:{node.lineno}")
            if isinstance(node, ast.Call):
                func_name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                if (
                    func_name == "function_name"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    where = f"{label}:{node.lineno}"
                    refs.functions.setdefault(node.args[0].value, []).append(where)
                for kw in node.keywords:
                    if not (isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)):
                        continue
                    where = f"{label}:{kw.value.lineno}"
                    if kw.arg == "connection":
                        refs.connections.setdefault(kw.value.value, []).append(where)
                    elif kw.arg == "queue_name":
                        refs.queues.setdefault(kw.value.value, []).append(where)
    return refs


# ---------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------


def _only_init_source(
    cls: type[BaseSettings],
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
    dotenv_settings: PydanticBaseSettingsSource,
    file_secret_settings: PydanticBaseSettingsSource,
) -> tuple[PydanticBaseSettingsSource, ...]:
    return (init_settings,)


def _isolated(group: type[BaseSettings]) -> type[BaseSettings]:
    """The settings class reading only its keyword arguments (not this process's environment)."""
    return type(
        f"Isolated{group.__name__}",
        (group,),
        {"settings_customise_sources": classmethod(_only_init_source)},
    )


def _sample_value(row: Mapping[str, Any]) -> str | None:
    """Stand-in for a value only known at deployment (resource properties)."""
    if row.get("secret"):
        return "sample-secret"
    name = str(row["field"]).lower()
    if name.endswith(("url", "uri")):
        return "https://sample.invalid"
    if name.endswith("_id"):
        return "00000000-0000-0000-0000-000000000000"
    return None


def _has_default(row: Mapping[str, Any]) -> bool:
    return not row.get("required") and row.get("default") not in (None, "")


def _check_settings(
    template: Template,
    settings: Mapping[str, AppSetting],
    catalogue: Sequence[Mapping[str, Any]],
    optional: Mapping[str, ListedSetting],
    platform: Mapping[str, ListedSetting],
    optional_label: str,
    platform_label: str,
) -> list[Problem]:
    problems: list[Problem] = []
    read_names: set[str] = set()
    for row in catalogue:
        names = [str(n) for n in row["env"]]
        read_names.update(names)
        present = [n for n in names if n in settings]
        listed = [optional[n] for n in names if n in optional]
        canonical = names[0]
        if present and listed:
            problems.append(
                Problem(
                    listed[0].where,
                    f"{listed[0].name} is set in the templates; remove it from {optional_label}",
                )
            )
            continue
        if present:
            continue
        if not listed:
            default = "no default" if not _has_default(row) else f"default {row['default']!r}"
            problems.append(
                Problem(
                    template.label,
                    f"{canonical} ({row['group']}.{row['field']}, {default}) is read by the app "
                    f"but not set in the templates' app settings nor listed in {optional_label}",
                )
            )
            continue
        entry = listed[0]
        if row.get("required"):
            problems.append(
                Problem(entry.where, f"{entry.name} is required; set it in the templates")
            )
        elif not _has_default(row):
            if not entry.replaced_by:
                problems.append(
                    Problem(
                        entry.where,
                        f"{entry.name} has no default, so it must be set in the templates "
                        "(or name the settings that replace it: 'NAME -> OTHER: reason')",
                    )
                )
            for alt in entry.replaced_by:
                if alt not in settings:
                    problems.append(
                        Problem(
                            entry.where,
                            f"{entry.name} is replaced by {alt}, which the templates do not set",
                        )
                    )
    for name, entry in optional.items():
        if name not in read_names:
            problems.append(
                Problem(entry.where, f"{name} is not a setting the app reads (stale entry?)")
            )
    for name, setting in settings.items():
        if name in FORBIDDEN_SETTINGS:
            problems.append(
                Problem(setting.where, f"{name} must not be set: {FORBIDDEN_SETTINGS[name]}")
            )
        elif name not in read_names and name not in platform:
            problems.append(
                Problem(
                    setting.where,
                    f"app setting {name} is not read by the app (sync/settings.py) and not "
                    f"listed in {platform_label}; misspelt?",
                )
            )
    for name, entry in platform.items():
        if name in read_names:
            problems.append(
                Problem(entry.where, f"{name} is read by the app; remove it from {platform_label}")
            )
        elif name not in settings:
            problems.append(
                Problem(entry.where, f"{name} is not set in the templates (stale entry?)")
            )
    return problems


def _check_secrets(
    template: Template, settings: Mapping[str, AppSetting], catalogue: Sequence[Mapping[str, Any]]
) -> list[Problem]:
    problems: list[Problem] = []
    secret_names = {str(n) for row in catalogue if row.get("secret") for n in row["env"]}
    uses_reference = False
    for name, setting in settings.items():
        values = _secret_choices(setting.expr)
        if any(KEY_VAULT_REFERENCE in v for v in values):
            uses_reference = True
        if name in secret_names and not (
            values
            and any(v.startswith(KEY_VAULT_REFERENCE) for v in values)
            and all(v == "" or v.startswith(KEY_VAULT_REFERENCE) for v in values)
        ):
            problems.append(
                Problem(
                    setting.where,
                    f"{name} is a secret: set it as a Key Vault reference "
                    f"('{KEY_VAULT_REFERENCE}VaultName=...;SecretName=...)'), never a value",
                )
            )
    if uses_reference:
        for symbol, node, body in template.resources_of(SITES):
            if not (body.get("properties") or {}).get("keyVaultReferenceIdentity"):
                problems.append(
                    Problem(
                        template.where(node),
                        f"{symbol} uses Key Vault references but does not set "
                        "properties.keyVaultReferenceIdentity to the user-assigned identity",
                    )
                )
    return problems


def _secret_choices(expr: Any) -> list[str]:
    """The literal strings a setting can take: one literal, or both branches of ``c ? a : b``
    (a secret may be empty when another credential replaces it). Anything else -> []."""
    if isinstance(expr, str):
        return [expr]
    op = expr.get("operator") if isinstance(expr, dict) else None
    if isinstance(op, dict) and op.get("type") == "conditional":
        operands = op.get("operands") or {}
        branches = [operands.get("true_value"), operands.get("false_value")]
        if all(isinstance(b, str) for b in branches):
            return [str(b) for b in branches]
    return []


def _check_values(
    template: Template,
    settings: Mapping[str, AppSetting],
    catalogue: Sequence[Mapping[str, Any]],
) -> list[Problem]:
    """Validate the values the template determines with the app's own settings models."""
    from sync import settings as settings_module

    problems: list[Problem] = []
    by_group: dict[str, dict[str, Any]] = {}
    names_by_field: dict[tuple[str, str], str] = {}
    where_by_field: dict[tuple[str, str], str] = {}
    for row in catalogue:
        present = [str(n) for n in row["env"] if str(n) in settings]
        if not present:
            continue
        setting = settings[present[0]]
        if any(v.startswith(KEY_VAULT_REFERENCE) for v in _secret_choices(setting.expr)):
            value: Any = _sample_value(row)
        else:
            try:
                value = template.resolve(setting.expr)
            except _Unresolvable:
                value = _sample_value(row)
        if value is None:
            continue
        if isinstance(value, dict | list):
            problems.append(Problem(setting.where, f"{present[0]} must be a single value"))
            continue
        gname, fname = str(row["group"]), str(row["field"])
        by_group.setdefault(gname, {})[fname] = value if isinstance(value, str) else str(value)
        names_by_field[(gname, fname)] = present[0]
        where_by_field[(gname, fname)] = setting.where
    for group_name, values in by_group.items():
        group = getattr(settings_module, group_name, None)
        if not (isinstance(group, type) and issubclass(group, BaseSettings)):
            continue
        try:
            _isolated(group)(**values)
        except ValidationError as exc:
            for err in exc.errors():
                loc = [str(p) for p in err.get("loc", ())]
                key = (group_name, loc[0]) if loc else (group_name, "")
                name = names_by_field.get(key, group_name)
                where = where_by_field.get(key, template.label)
                msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
                problems.append(Problem(where, f"{name}: the template's value is invalid: {msg}"))
    return problems


def _check_storage(
    template: Template,
    settings: Mapping[str, AppSetting],
    catalogue: Sequence[Mapping[str, Any]],
    tables: Sequence[str],
    default_queue: str,
    poison_suffix: str,
    refs: TriggerRefs,
) -> list[Problem]:
    problems: list[Problem] = []
    table_names, table_problems = template.resource_names(TABLE)
    queue_names, queue_problems = template.resource_names(QUEUE)
    problems += table_problems + queue_problems

    def setting_value(env: str) -> str | None:
        if env in settings:
            value = template.try_resolve(settings[env].expr)
            return value if isinstance(value, str) else None
        for row in catalogue:
            if env in row["env"] and isinstance(row.get("default"), str):
                return str(row["default"])
        return None

    prefix = setting_value("SYNC_TABLE_PREFIX")
    if prefix is None:
        problems.append(Problem(template.label, "cannot work out SYNC_TABLE_PREFIX's value"))
    else:
        for logical in tables:
            if f"{prefix}{logical}" not in table_names:
                problems.append(
                    Problem(
                        template.label,
                        f"table {prefix}{logical} (sync/state/tables.py TABLES '{logical}') "
                        "is not created by the templates",
                    )
                )
    jobs_queue = setting_value("SYNC_JOBS_QUEUE") or default_queue
    wanted: dict[str, str] = {
        jobs_queue: "SYNC_JOBS_QUEUE",
        f"{jobs_queue}{poison_suffix}": f"poison queue of {jobs_queue}",
    }
    for queue, locations in refs.queues.items():
        match = _PERCENT_SETTING.match(queue)
        if match:
            value = setting_value(match[1])
            if value is None:
                continue  # reported as a missing %SETTING% below
            queue = value
        wanted.setdefault(queue, f"queue_name at {locations[0]}")
    for queue, why in wanted.items():
        if queue not in queue_names:
            problems.append(
                Problem(template.label, f"queue {queue} ({why}) is not created by the templates")
            )
    for name, locations in refs.settings.items():
        if name not in settings:
            problems.append(
                Problem(
                    locations[0],
                    f"%{name}% is resolved by the Functions host from app settings, but the "
                    "templates do not set it (the host fails to index the function)",
                )
            )
    for conn, locations in refs.connections.items():
        if conn not in settings and not any(s.startswith(f"{conn}__") for s in settings):
            problems.append(
                Problem(
                    locations[0],
                    f"connection '{conn}' needs app setting {conn} or {conn}__* in the templates",
                )
            )
    return problems


def _check_platform(template: Template, settings: Mapping[str, AppSetting]) -> list[Problem]:
    problems: list[Problem] = []
    label = template.label

    plans = list(template.resources_of(PLAN))
    if not any(
        template.try_resolve((body.get("sku") or {}).get("name")) == "FC1"
        and template.try_resolve((body.get("sku") or {}).get("tier")) == "FlexConsumption"
        for _, _, body in plans
    ):
        problems.append(Problem(label, "no Flex Consumption plan (sku FC1 / FlexConsumption)"))

    sites = list(template.resources_of(SITES))
    if len(sites) != 1:
        problems.append(Problem(label, f"expected exactly one function app, found {len(sites)}"))
    for symbol, node, body in sites:
        props = body.get("properties") or {}
        runtime = (props.get("functionAppConfig") or {}).get("runtime") or {}
        name = template.try_resolve(runtime.get("name"))
        version = template.try_resolve(runtime.get("version"))
        if (name, version) != ("python", "3.11"):
            problems.append(
                Problem(
                    template.where(node),
                    f"{symbol}: functionAppConfig.runtime must be python 3.11, "
                    f"found {name!r} {version!r}",
                )
            )
        if not (props.get("functionAppConfig") or {}).get("deployment"):
            problems.append(
                Problem(template.where(node), f"{symbol}: functionAppConfig.deployment missing")
            )
        identity_type = str(template.try_resolve((body.get("identity") or {}).get("type")) or "")
        if "UserAssigned" not in identity_type:
            problems.append(
                Problem(template.where(node), f"{symbol}: needs a user-assigned managed identity")
            )
    if not settings:
        problems.append(Problem(label, "no app settings found (sites/config 'appsettings')"))

    for symbol, node, body in template.resources_of(KEY_VAULT):
        if (
            template.try_resolve((body.get("properties") or {}).get("enableRbacAuthorization"))
            is not True
        ):
            problems.append(
                Problem(template.where(node), f"{symbol}: Key Vault must use RBAC authorization")
            )
    if not list(template.resources_of(KEY_VAULT)):
        problems.append(Problem(label, "no Key Vault"))
    insights = list(template.resources_of(APP_INSIGHTS))
    if not insights:
        problems.append(Problem(label, "no Application Insights component"))
    for symbol, node, body in insights:
        if not (body.get("properties") or {}).get("WorkspaceResourceId"):
            problems.append(Problem(template.where(node), f"{symbol}: must be workspace-based"))
    for symbol, node, body in template.resources_of(STORAGE):
        if (
            template.try_resolve((body.get("properties") or {}).get("allowSharedKeyAccess"))
            is not False
        ):
            problems.append(
                Problem(template.where(node), f"{symbol}: set allowSharedKeyAccess: false")
            )

    identities = {symbol for symbol, _, _ in template.resources_of(IDENTITY)}
    if not identities:
        problems.append(Problem(label, "no user-assigned managed identity"))
    granted: set[str] = set()
    for symbol, node, body in template.resources_of(ROLE_ASSIGNMENT):
        props = body.get("properties") or {}
        role = template.try_resolve(props.get("roleDefinitionId"))
        role_id = ""
        if isinstance(role, str):
            found = _ROLE_GUID.search(role.lower())
            role_id = found.group(0) if found else ""
        if not role_id:
            problems.append(
                Problem(template.where(node), f"{symbol}: cannot work out the role definition id")
            )
            continue
        if role_id in FORBIDDEN_ROLES:
            problems.append(
                Problem(
                    template.where(node),
                    f"{symbol}: {FORBIDDEN_ROLES[role_id]} is broader than the app needs",
                )
            )
        principal = render(props.get("principalId"))
        if any(principal == f"{ident}.properties.principalId" for ident in identities):
            granted.add(role_id)
    for role_id, role_name in REQUIRED_APP_ROLES.items():
        if role_id not in granted:
            problems.append(
                Problem(label, f"the app identity is not granted {role_name} ({role_id})")
            )

    outputs = template.outputs
    for name, suffix in REQUIRED_OUTPUTS.items():
        output = outputs.get(name)
        if output is None:
            problems.append(Problem(label, f"output {name} is missing (the docs use it)"))
            continue
        value = output.get("value")
        if suffix and not (isinstance(value, str) and value.endswith(suffix)):
            problems.append(
                Problem(template.where(output), f"output {name} must end with {suffix}")
            )
    base = settings.get("SYNC_PUBLIC_BASE_URL")
    if base is not None and not (isinstance(base.expr, str) and base.expr.startswith("https://")):
        problems.append(Problem(base.where, "SYNC_PUBLIC_BASE_URL must be an https:// URL"))
    return problems


def _check_parameters(template: Template, path: Path, label: str) -> list[Problem]:
    if not path.exists():
        return [Problem(label, "parameters file is missing")]
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return [Problem(f"{label}:{exc.lineno}", f"not valid JSON: {exc.msg}")]
    given = doc.get("parameters") if isinstance(doc, dict) else None
    if not isinstance(given, dict):
        return [Problem(label, "expected an object with 'parameters'")]
    problems: list[Problem] = []
    params = template.params
    for name, entry in given.items():
        if name not in params:
            problems.append(Problem(label, f"parameter {name} does not exist in {template.label}"))
        elif not (isinstance(entry, dict) and ("value" in entry or "reference" in entry)):
            problems.append(Problem(label, f"parameter {name}: expected {{'value': ...}}"))
    for name, param in params.items():
        if param.get("default") is None and name not in given:
            problems.append(
                Problem(label, f"parameter {name} has no default and is not supplied here")
            )
    # A deployment by a service principal (CI) fails its role assignments if the principal is
    # passed on but its type stays at the default 'User'.
    if "principalId" in given and "principalType" in params and "principalType" not in given:
        problems.append(
            Problem(
                label, "principalId is supplied but principalType is not (AZURE_PRINCIPAL_TYPE)"
            )
        )
    for name, entry in given.items():
        value = entry.get("value") if isinstance(entry, dict) else None
        allowed = _decorator(params.get(name) or {}, "allowed")
        match = _AZD_DEFAULT.fullmatch(value) if isinstance(value, str) else None
        if match and isinstance(allowed, list) and match["default"] not in map(str, allowed):
            problems.append(
                Problem(
                    label,
                    f"parameter {name}: placeholder default {match['default']!r} is not one of "
                    f"{allowed}",
                )
            )
    return problems


def _decorator(param: Mapping[str, Any], kind: str) -> Any:
    """The argument of ``@kind(...)`` on a parameter (pycep: min_length, max_length, allowed)."""
    for deco in param.get("decorators") or []:
        if isinstance(deco, dict) and deco.get("type") == kind:
            return deco.get("argument")
    return None


def _check_limits(
    template: Template, settings: Mapping[str, AppSetting], app_max_queue: int, suffix: str
) -> list[Problem]:
    """Limits Azure enforces that a parameter's decorators must not let through."""
    problems: list[Problem] = []
    params = template.params
    queue = settings.get("SYNC_JOBS_QUEUE")
    param_name = queue.expr if queue is not None and isinstance(queue.expr, str) else ""
    if param_name in params:
        longest = _decorator(params[param_name], "max_length")
        where = template.where(params[param_name])
        if not isinstance(longest, int):
            problems.append(
                Problem(where, f"{param_name} needs @maxLength (queue names are limited)")
            )
        else:
            if longest + len(suffix) > AZURE_QUEUE_NAME_MAX:
                problems.append(
                    Problem(
                        where,
                        f"{param_name} allows {longest} characters; with '{suffix}' the poison "
                        f"queue's name would exceed Azure's {AZURE_QUEUE_NAME_MAX}",
                    )
                )
            if longest != app_max_queue:
                problems.append(
                    Problem(
                        where,
                        f"{param_name} allows {longest} characters but the app allows "
                        f"{app_max_queue} (sync/settings.py SYNC_JOBS_QUEUE)",
                    )
                )
    for symbol, node, body in template.resources_of(SITES):
        scale = ((body.get("properties") or {}).get("functionAppConfig") or {}).get(
            "scaleAndConcurrency"
        ) or {}
        memory = scale.get("instanceMemoryMB")
        param = params.get(memory) if isinstance(memory, str) else None
        choices = _decorator(param, "allowed") if param is not None else [memory]
        if not isinstance(choices, list):
            choices = [template.try_resolve(memory)]
        bad = [c for c in choices if c not in FLEX_INSTANCE_MEMORY_MB]
        if bad:
            problems.append(
                Problem(
                    template.where(param if param is not None else node),
                    f"{symbol}: instanceMemoryMB allows {bad}; Flex Consumption accepts "
                    f"{sorted(FLEX_INSTANCE_MEMORY_MB)}",
                )
            )
    return problems


def _level_rank(value: Any) -> int | None:
    return LOG_LEVELS.index(value) if value in LOG_LEVELS else None


def _check_host_json(path: Path, label: str, functions: Mapping[str, list[str]]) -> list[Problem]:
    """Log levels and sampling that the requests table, the alerts and SYNC_LOG_LEVEL rely on."""
    if not path.exists():
        return [Problem(label, "missing")]
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return [Problem(f"{label}:{exc.lineno}", f"not valid JSON: {exc.msg}")]
    logging_ = doc.get("logging") or {}
    levels = logging_.get("logLevel") or {}
    problems: list[Problem] = []
    for category, level in levels.items():
        if _level_rank(level) is None:
            problems.append(Problem(label, f"logLevel {category}: {level!r} is not a log level"))

    def effective(category: str) -> Any:
        """The host applies the longest configured prefix of the category."""
        parts = category.split(".")
        for end in range(len(parts), 0, -1):
            key = ".".join(parts[:end])
            if key in levels:
                return levels[key]
        return levels.get("default", "Information")

    info = LOG_LEVELS.index("Information")
    rank = _level_rank(effective("Host.Results"))
    if rank is None or rank > info:
        problems.append(
            Problem(
                label,
                "Host.Results must log at Information: it feeds the requests table, and at a "
                "higher level successful invocations are never recorded",
            )
        )
    for name in sorted(functions):
        user = _level_rank(effective(f"Function.{name}.User"))
        if user is None or user > LOG_LEVELS.index("Debug"):
            problems.append(
                Problem(
                    label,
                    f"Function.{name}.User must be Debug or lower, so SYNC_LOG_LEVEL alone "
                    f"decides which of {name}'s log lines reach Application Insights",
                )
            )
    chatter = _level_rank(effective("Function.__any__"))
    if chatter is not None and chatter < LOG_LEVELS.index("Warning"):
        problems.append(
            Problem(
                label,
                "Function should be Warning: at Information the host adds two traces per "
                "invocation that the requests table already records",
            )
        )
    sampling = (logging_.get("applicationInsights") or {}).get("samplingSettings") or {}
    if sampling.get("isEnabled", True):
        excluded = {t.strip() for t in str(sampling.get("excludedTypes", "")).split(";")}
        for kind in ("Request", "Trace"):
            if kind not in excluded:
                problems.append(
                    Problem(
                        label,
                        f"samplingSettings.excludedTypes must include {kind}: the alerts count "
                        "requests and traces, and sampling would drop some",
                    )
                )
    return problems


def _iso_duration_seconds(value: Any) -> int | None:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?", str(value or ""))
    if not match or not any(match.groups()):
        return None
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60


def _longest_gap_seconds(schedule: str) -> int | None:
    """Longest time between two firings of a six-field NCRONTAB over two weeks."""
    from datetime import UTC, datetime, timedelta

    from croniter import croniter

    start = datetime(2026, 1, 5, tzinfo=UTC)
    try:
        it = croniter(schedule, start, second_at_beginning=True)
        times = [it.get_next(datetime)]
        while times[-1] < start + timedelta(days=14) and len(times) < 5000:
            times.append(it.get_next(datetime))
    except (ValueError, KeyError):
        return None
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    return int(max(gaps)) if gaps else None


_QUERY_NAMES = re.compile(r'\bname\s*(?:==\s*"([^"]+)"|in\s*\(([^)]*)\))')


def alert_queries(template: Template) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(query text, rule, resource node) for every log alert, loops expanded."""
    found: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for _symbol, node, body in template.resources_of(QUERY_RULE):
        try:
            bindings = template.loop_bindings(node)
        except _Unresolvable:
            bindings = [{}]
        raw = body.get("properties") or {}
        for local in bindings:
            # Resolve piece by piece: scopes and actions name resources known only at deployment.
            props = {
                key: template.try_resolve(raw.get(key), local)
                for key in ("displayName", "windowSize", "evaluationFrequency")
            }
            for criterion in (raw.get("criteria") or {}).get("allOf") or []:
                query = template.try_resolve((criterion or {}).get("query"), local)
                if isinstance(query, str):
                    found.append((query, props, node))
    return found


def _check_alerts(
    template: Template,
    settings: Mapping[str, AppSetting],
    functions: Mapping[str, list[str]],
    poison_queue: str,
    reconcile_schedule: str | None,
) -> list[Problem]:
    problems: list[Problem] = []
    label = template.label
    groups = {symbol for symbol, _, _ in template.resources_of(ACTION_GROUP)}
    queries = alert_queries(template)
    if not groups:
        problems.append(Problem(label, "no action group for the alerts"))
    seen: set[str] = set()
    for query, props, node in queries:
        where = template.where(node)
        title = str(props.get("displayName") or "alert")
        for one, many in _QUERY_NAMES.findall(query):
            names = [one] if one else re.findall(r'"([^"]+)"', many)
            for name in names:
                if name not in functions:
                    problems.append(
                        Problem(
                            where,
                            f"{title}: the query names function {name!r}, which the code does "
                            "not declare (@function_name in function_app.py, sync/blueprints)",
                        )
                    )
        for queue in re.findall(r'"([a-z0-9-]+-poison)"', query):
            if queue != poison_queue:
                problems.append(
                    Problem(where, f"{title}: the query watches {queue}, not {poison_queue}")
                )
        if poison_queue in query:
            seen.add("poison")
        if 'startswith "job "' in query:
            seen.add("failing mailbox")
        if '"reconcile_timer"' in query:
            seen.add("missed reconciliation")
            window = _iso_duration_seconds(props.get("windowSize"))
            gap = _longest_gap_seconds(reconcile_schedule) if reconcile_schedule else None
            if window is None or (gap is not None and window < 2 * gap):
                problems.append(
                    Problem(
                        where,
                        f"{title}: window {props.get('windowSize')} is shorter than two "
                        f"intervals of the reconcile schedule {reconcile_schedule!r}, so it "
                        "would fire between healthy runs",
                    )
                )
        if '"graph_notifications"' in query:
            seen.add("webhook 5xx")
        actions = (body_of(node).get("properties") or {}).get("actions") or {}
        targets = actions.get("actionGroups") if isinstance(actions, dict) else None
        if not (
            isinstance(targets, list)
            and any(render(t) in {f"{g}.id" for g in groups} for t in targets)
        ):
            problems.append(Problem(where, f"{title}: notifies no action group of the template"))
    for key, how in REQUIRED_ALERTS.items():
        if key not in seen:
            problems.append(
                Problem(label, f"no log alert for {key} (recognised by {how} in its query)")
            )
    return problems


def _check_text(path: Path, label: str) -> list[Problem]:
    problems: list[Problem] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.lstrip().startswith("//"):
            continue
        for pattern in SECRET_PATTERNS:
            if pattern.search(line):
                problems.append(
                    Problem(
                        f"{label}:{number}",
                        f"looks like a key or secret in the template ({pattern.pattern}); "
                        "use the managed identity or a Key Vault reference",
                    )
                )
    return problems


def _check_funcignore(root: Path) -> list[Problem]:
    path = root / ".funcignore"
    if not path.exists():
        return []
    needed = {"function_app.py", "host.json", "requirements.txt", "sync", "sync/"}
    problems = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        entry = raw.strip().lstrip("/")
        if entry in needed:
            problems.append(Problem(f".funcignore:{number}", f"{entry} must be deployed"))
    return problems


def check_infra(
    repo_root: Path,
    *,
    infra_dir: Path | None = None,
    catalogue: Sequence[Mapping[str, Any]] | None = None,
    tables: Sequence[str] | None = None,
    trigger_sources: Sequence[str] = TRIGGER_SOURCES,
    host_json: Path | None = None,
) -> list[Problem]:
    """Every inconsistency between the code in ``repo_root`` and its ``infra/`` templates."""
    from sync.settings import MAX_JOBS_QUEUE_CHARS, settings_catalogue
    from sync.state import tables as tables_module

    infra = infra_dir or repo_root / "infra"
    catalogue = settings_catalogue() if catalogue is None else catalogue
    tables = tables_module.TABLES if tables is None else tables

    def label(path: Path) -> str:
        try:
            return str(path.relative_to(repo_root))
        except ValueError:
            return str(path.relative_to(infra.parent))

    problems: list[Problem] = []
    parsed: dict[Path, Template] = {}
    for path in sorted(infra.rglob("*.bicep")):
        try:
            parsed[path] = Template(
                path, parse_bicep(path), label(path), path.read_text(encoding="utf-8")
            )
        except BicepSyntaxError as exc:
            where = f"{label(path)}:{exc.line}" if exc.line else label(path)
            problems.append(Problem(where, f"Bicep syntax error: {exc.detail}"))
        problems += _check_text(path, label(path))
    main_path = infra / MAIN_TEMPLATE
    if main_path not in parsed:
        if not main_path.exists():
            problems.append(Problem(label(main_path), "missing"))
        return sorted(set(problems))
    template = parsed[main_path]
    settings = template.app_settings()
    optional, optional_problems = read_setting_list(
        infra / OPTIONAL_SETTINGS_FILE, label(infra / OPTIONAL_SETTINGS_FILE)
    )
    platform, platform_problems = read_setting_list(
        infra / PLATFORM_SETTINGS_FILE, label(infra / PLATFORM_SETTINGS_FILE)
    )
    refs = scan_trigger_sources(repo_root, trigger_sources)
    problems += optional_problems + platform_problems
    problems += _check_settings(
        template,
        settings,
        catalogue,
        optional,
        platform,
        label(infra / OPTIONAL_SETTINGS_FILE),
        label(infra / PLATFORM_SETTINGS_FILE),
    )
    problems += _check_secrets(template, settings, catalogue)
    problems += _check_values(template, settings, catalogue)
    problems += _check_storage(
        template,
        settings,
        catalogue,
        tables,
        tables_module.DEFAULT_JOBS_QUEUE,
        tables_module.POISON_SUFFIX,
        refs,
    )
    problems += _check_platform(template, settings)
    problems += _check_parameters(template, infra / PARAMETERS_FILE, label(infra / PARAMETERS_FILE))
    problems += _check_funcignore(repo_root)
    problems += _check_limits(template, settings, MAX_JOBS_QUEUE_CHARS, tables_module.POISON_SUFFIX)
    host_path = host_json or repo_root / "host.json"
    host_label = host_path.name if host_json is not None else label(host_path)
    problems += _check_host_json(host_path, host_label, refs.functions)
    jobs_queue = _setting_value(template, settings, catalogue, "SYNC_JOBS_QUEUE")
    problems += _check_alerts(
        template,
        settings,
        refs.functions,
        f"{jobs_queue or tables_module.DEFAULT_JOBS_QUEUE}{tables_module.POISON_SUFFIX}",
        _setting_value(template, settings, catalogue, "SYNC_RECONCILE_SCHEDULE"),
    )
    return sorted(set(problems))


def _setting_value(
    template: Template,
    settings: Mapping[str, AppSetting],
    catalogue: Sequence[Mapping[str, Any]],
    env: str,
) -> str | None:
    """A setting's value as the template sets it, else the app's default."""
    if env in settings:
        value = template.try_resolve(settings[env].expr)
        return value if isinstance(value, str) else None
    for row in catalogue:
        if env in row["env"] and isinstance(row.get("default"), str):
            return str(row["default"])
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[0]) if args else Path.cwd()
    problems = check_infra(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) between the code and infra/", file=sys.stderr)
        return 1
    print("infra/ is consistent with the code")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
