"""Functions (ASP.NET Core) route templates → aiohttp paths.

Supported: literal segments, ``{name}``, typed parameters (``{id:int}``, ``long``, ``bool``,
``guid``, ``alpha``, ``decimal``/``double``/``float``, ``datetime``), argument constraints
(``minlength(n)``, ``maxlength(n)``, ``length(n)``/``length(a,b)``, ``min(n)``, ``max(n)``,
``range(a,b)``, ``regex(expr)``), optional parameters ``{x?}`` and defaults ``{x=v}`` in trailing
segments, and catch-alls ``{*rest}`` / ``{**rest}`` as the last segment.

aiohttp has no optional segments, so a template with optional trailing parts becomes several
aiohttp paths (one per arity).  Shapes that a regex expresses cheaply go into the aiohttp
pattern, so a non-matching value falls through to the next route like in ASP.NET; value
constraints (lengths, ranges, ``regex``, ``datetime``) are checked after matching and answer
404 when they fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime


class RouteTemplateError(ValueError):
    """A route template the local host cannot convert."""


Check = Callable[[str], bool]

_INT = r"-?\d+"
_HEX = "[0-9A-Fa-f]"
_SHAPES: dict[str, str] = {
    "int": _INT,
    "long": _INT,
    "bool": "[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]",
    "guid": f"{_HEX}{{8}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{12}}",
    "alpha": "[A-Za-z]+",
    "decimal": r"-?(?:\d+\.?\d*|\.\d+)",
    "double": r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?",
    "float": r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?",
}
_DEFAULT_SHAPE = "[^{}/]+"
_CONSTRAINT = re.compile(r"^(?P<name>[A-Za-z]+)(?:\((?P<args>.*)\))?$", re.S)


@dataclass(frozen=True)
class _Param:
    name: str
    shape: str
    checks: tuple[Check, ...]
    optional: bool
    default: str | None
    catch_all: bool
    constrained: bool


@dataclass(frozen=True)
class Segment:
    text: str  # aiohttp form of this segment
    # ASP.NET inbound precedence digit: literal 1, complex 2, constrained 3, plain 4, catch-all 5
    rank: int
    params: tuple[_Param, ...] = ()

    @property
    def droppable(self) -> bool:
        """A trailing segment that may be left out (``{x?}``, ``{x=v}``, ``{*rest}``)."""
        return (
            len(self.params) == 1
            and self.text.startswith("{")
            and (self.params[0].optional or self.params[0].catch_all)
        )


@dataclass(frozen=True)
class RouteVariant:
    path: str  # aiohttp path, e.g. "/api/items/{id:-?\\d+}"
    defaults: dict[str, str] = field(default_factory=dict)  # values of left-out parameters
    absent: tuple[str, ...] = ()  # parameters left out without a default


@dataclass(frozen=True)
class ConvertedRoute:
    template: str
    variants: tuple[RouteVariant, ...]
    checks: dict[str, tuple[Check, ...]]
    precedence: tuple[int, ...]

    def check(self, values: dict[str, str]) -> bool:
        for name, checks in self.checks.items():
            value = values.get(name)
            if value is None:
                continue
            if not all(c(value) for c in checks):
                return False
        return True


def convert_route(template: str, route_prefix: str = "api") -> ConvertedRoute:
    """Convert a Functions route template (without prefix) into aiohttp paths."""
    route = template.strip().strip("/")
    prefix = route_prefix.strip().strip("/")
    segments = [_segment(raw, template) for raw in _split(route)] if route else []
    for i, seg in enumerate(segments):
        if any(p.catch_all for p in seg.params) and i != len(segments) - 1:
            raise RouteTemplateError(
                f"{template!r}: a catch-all parameter must be the last segment"
            )
    names = [p.name.lower() for seg in segments for p in seg.params]
    if len(names) != len(set(names)):
        raise RouteTemplateError(f"{template!r}: a parameter name is used twice")

    base = [prefix] if prefix else []
    variants: list[RouteVariant] = []
    kept = list(segments)
    defaults: dict[str, str] = {}
    absent: list[str] = []
    while True:
        path = "/" + "/".join(base + [s.text for s in kept])
        variants.append(RouteVariant(path=path, defaults=dict(defaults), absent=tuple(absent)))
        if not kept or not kept[-1].droppable:
            break
        dropped = kept.pop().params[0]
        if dropped.default is not None:
            defaults[dropped.name] = dropped.default
        else:
            absent.append(dropped.name)
    # Optional parameters may only appear in the trailing droppable run.
    for seg in kept:
        if any(p.optional for p in seg.params):
            raise RouteTemplateError(
                f"{template!r}: optional parameters are supported only as whole trailing segments"
            )
    checks = {p.name: p.checks for seg in segments for p in seg.params if p.checks}
    precedence = tuple(s.rank for s in segments)
    return ConvertedRoute(template, tuple(variants), checks, precedence)


def _split(route: str) -> list[str]:
    """Split on '/' outside braces."""
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in route:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise RouteTemplateError(f"unbalanced '}}' in route {route!r}")
        if ch == "/" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if depth != 0:
        raise RouteTemplateError(f"unbalanced '{{' in route {route!r}")
    parts.append(current)
    if any(p == "" for p in parts):
        raise RouteTemplateError(f"empty segment in route {route!r}")
    return parts


def _segment(raw: str, template: str) -> Segment:
    pieces: list[str] = []
    params: list[_Param] = []
    i = 0
    while i < len(raw):
        start = raw.find("{", i)
        if start < 0:
            pieces.append(_literal(raw[i:], template))
            break
        if start > i:
            pieces.append(_literal(raw[i:start], template))
        end = _closing(raw, start)
        param = _parse_param(raw[start + 1 : end], template)
        params.append(param)
        pieces.append("{" + param.name + ":" + param.shape + "}")
        i = end + 1
    text = "".join(pieces)
    if not params:
        return Segment(text, 1)
    if len(params) > 1 or not raw.startswith("{") or not raw.endswith("}"):
        return Segment(text, 2, tuple(params))
    p = params[0]
    if p.catch_all:
        return Segment(text, 5, (p,))
    return Segment(text, 3 if p.constrained else 4, (p,))


def _closing(raw: str, start: int) -> int:
    depth = 0
    for j in range(start, len(raw)):
        if raw[j] == "{":
            depth += 1
        elif raw[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    raise RouteTemplateError(f"unbalanced '{{' in {raw!r}")


def _literal(text: str, template: str) -> str:
    if "{" in text or "}" in text:
        raise RouteTemplateError(f"{template!r}: braces in literal text are not supported")
    return text


def _parse_param(body: str, template: str) -> _Param:
    catch_all = False
    if body.startswith("**"):
        catch_all, body = True, body[2:]
    elif body.startswith("*"):
        catch_all, body = True, body[1:]
    default: str | None = None
    optional = False
    # A default or '?' follows the constraints: {name:int=5} / {name:int?}
    if "=" in body and "(" not in body.split("=", 1)[0].split(":", 1)[-1]:
        body, default = body.split("=", 1)
        optional = True
    elif body.endswith("?"):
        body, optional = body[:-1], True
    name, *constraints = _split_constraints(body)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RouteTemplateError(f"{template!r}: bad parameter name {name!r}")
    shape = ".*" if catch_all else _DEFAULT_SHAPE
    checks: list[Check] = []
    for constraint in constraints:
        match = _CONSTRAINT.match(constraint)
        if not match:
            raise RouteTemplateError(f"{template!r}: bad constraint {constraint!r}")
        kind = match.group("name").lower()
        args = match.group("args")
        if kind in _SHAPES and args is None:
            if not catch_all:
                shape = _SHAPES[kind]
            checks.append(_type_check(kind))
        elif kind == "datetime" and args is None:
            checks.append(_is_datetime)
        else:
            checks.append(_arg_check(kind, args, template))
    return _Param(
        name=name,
        shape=shape,
        checks=tuple(checks),
        optional=optional or catch_all,
        default=default,
        catch_all=catch_all,
        constrained=bool(constraints),
    )


def _split_constraints(body: str) -> list[str]:
    """'id:int:min(1)' → ['id', 'int', 'min(1)'], keeping ':' inside parentheses."""
    out: list[str] = []
    depth = 0
    current = ""
    for ch in body:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == ":" and depth == 0:
            out.append(current)
            current = ""
        else:
            current += ch
    out.append(current)
    return out


def _type_check(kind: str) -> Check:
    pattern = re.compile(f"(?:{_SHAPES[kind]})")
    return lambda value: pattern.fullmatch(value) is not None


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _number(text: str, template: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise RouteTemplateError(f"{template!r}: expected an integer, got {text!r}") from None


def _arg_check(kind: str, args: str | None, template: str) -> Check:
    if args is None:
        raise RouteTemplateError(f"{template!r}: unknown route constraint {kind!r}")
    if kind == "regex":
        pattern = re.compile(args.replace("{{", "{").replace("}}", "}"), re.IGNORECASE)
        return lambda value: pattern.search(value) is not None
    nums = [_number(a, template) for a in args.split(",")]
    if kind == "minlength" and len(nums) == 1:
        return lambda value: len(value) >= nums[0]
    if kind == "maxlength" and len(nums) == 1:
        return lambda value: len(value) <= nums[0]
    if kind == "length" and len(nums) == 1:
        return lambda value: len(value) == nums[0]
    if kind == "length" and len(nums) == 2:
        return lambda value: nums[0] <= len(value) <= nums[1]
    if kind in {"min", "max", "range"}:
        low, high = {
            "min": (nums[0], None),
            "max": (None, nums[0]),
            "range": (nums[0], nums[-1]),
        }[kind]
        if kind == "range" and len(nums) != 2:
            raise RouteTemplateError(f"{template!r}: range() takes two integers")

        def in_range(value: str) -> bool:
            try:
                number = int(value)
            except ValueError:
                return False
            return (low is None or number >= low) and (high is None or number <= high)

        return in_range
    raise RouteTemplateError(f"{template!r}: unknown route constraint {kind}({args})")
