"""Log levels of the service and of the libraries under it, applied wherever the app runs.

In Azure the Python worker attaches its handler to the root logger at INFO, and the host turns
every record that passes into a trace in Application Insights (host.json lets each function's
own lines through at Debug, so the level chosen here is the one that counts). Two consequences
this module deals with, at import of ``function_app``:

* ``SYNC_LOG_LEVEL`` must be applied by the app itself, or the ``logLevel`` deployment parameter
  does nothing (before, only the local host applied it);
* the Azure SDKs log every HTTP request and response at INFO
  (``azure.core.pipeline.policies.http_logging_policy``), azure-identity every token, httpx
  every request: at the worker's INFO each becomes a trace. They stay at ``SYNC_SDK_LOG_LEVEL``
  (WARNING by default).

The levels are read with the same field types as ``AppSettings``, but without validating the
rest of the configuration: importing the app must not fail on, say, a missing storage setting
(``infra/package.sh`` imports it with no settings at all). A bad level falls back to the default
here and is reported by ``load_settings()`` when the app first uses its settings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from sync.settings import AppSettings, env_names
from sync.telemetry import MailboxMode, enable_azure_monitor, install_log_context

SERVICE_LOGGER = "sync"
# Libraries whose INFO output is one line per request or token.
SDK_LOGGERS = ("azure", "msal", "httpx", "httpcore", "urllib3", "aiohttp")


@dataclass(frozen=True)
class LogLevels:
    service: str
    sdk: str
    mailbox: MailboxMode = "plain"


def _read(environ: Mapping[str, str], field: str) -> str:
    info = AppSettings.model_fields[field]
    assert info.annotation is not None  # declared in AppSettings with a type
    # pydantic-settings matches variable names case-insensitively; do the same.
    upper = {key.upper(): value for key, value in environ.items()}
    raw = next(
        (upper[n.upper()] for n in env_names(AppSettings, field) if n.upper() in upper), None
    )
    if raw is None:
        return str(info.default)
    try:
        return str(TypeAdapter(info.annotation).validate_python(raw))
    except ValidationError:
        return str(info.default)


def read_levels(environ: Mapping[str, str] | None = None) -> LogLevels:
    env = os.environ if environ is None else environ
    mailbox: MailboxMode = "hash" if _read(env, "log_mailbox") == "hash" else "plain"
    return LogLevels(
        service=_read(env, "log_level"), sdk=_read(env, "sdk_log_level"), mailbox=mailbox
    )


def apply_levels(levels: LogLevels) -> None:
    """Set the levels on the loggers themselves: handlers (the worker's, the local host's) stay
    as they are, and records below a logger's level are never created."""
    logging.getLogger(SERVICE_LOGGER).setLevel(levels.service)
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(levels.sdk)


def configure_logging(
    environ: Mapping[str, str] | None = None, *, telemetry: bool = False
) -> LogLevels:
    """Apply ``SYNC_LOG_LEVEL`` and ``SYNC_SDK_LOG_LEVEL`` from the environment, and give every
    record the run's fields (``sync.telemetry``, ``SYNC_LOG_MAILBOX``).  With ``telemetry``
    (the function app), export to Application Insights when its connection string is set."""
    levels = read_levels(environ)
    apply_levels(levels)
    install_log_context(levels.mailbox)
    if telemetry:
        enable_azure_monitor(environ)
    return levels
