"""``%NAME%`` binding expressions: the real host replaces them with the app setting ``NAME``.

Locally the environment plays the app settings.  A setting that is not set falls back to the
default that ``sync.settings.AppSettings`` declares for it (e.g. ``%SYNC_PUSH_SCHEDULE%`` →
``AppSettings.push_schedule``), so ``python -m devkit serve`` works with no schedule variables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

_EXPRESSION = re.compile(r"%([^%]+)%")


class AppSettingError(LookupError):
    """A binding refers to an app setting that is neither set nor has a known default."""


def setting_default(name: str) -> str | None:
    """Default of the ``AppSettings`` field fed by environment variable ``name``, if any."""
    from sync.settings import AppSettings, env_names

    for field_name, info in AppSettings.model_fields.items():
        if any(n.lower() == name.lower() for n in env_names(AppSettings, field_name)):
            if info.is_required() or info.default is None:
                return None
            return str(info.default)
    return None


def resolve(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every ``%NAME%`` in a binding property with its app setting value."""
    env = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in env:
            return env[name]
        # Linux app settings are case-sensitive, but be lenient like Windows hosts.
        for key, val in env.items():
            if key.lower() == name.lower():
                return val
        fallback = setting_default(name)
        if fallback is None:
            raise AppSettingError(
                f"app setting {name!r} (used as %{name}%) is not set and has no default "
                "in sync.settings.AppSettings"
            )
        return fallback

    return _EXPRESSION.sub(lookup, value)
