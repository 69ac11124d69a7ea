"""What a run leaves in Application Insights: log records that say which run they belong to, and
custom metrics.

**Log context.**  Where a job or run starts (the worker, the runner, the timers, the operator
routes) the job id, run id, mailbox, stream and kind are bound in context variables
(``bind``); a log record factory copies them onto every record created inside, as the
attributes named in ``LOG_FIELDS``.  With the Azure Monitor distro (below) a record's
attributes become its ``customDimensions``, so one run can be followed end to end::

    traces | where customDimensions.run_id == "3f9c0a1b2c4d"

``SYNC_LOG_MAILBOX=hash`` writes a stable hash of the mailbox (``h:`` + 16 hex digits of its
SHA-256) instead of the address, in the ``mailbox`` field and the worker's line per job.

**Metrics** (OpenTelemetry; ``METRICS``): runs by outcome, items synced per action, the latency
from a notification to its sent emails being linked, queue and poison depth, and the
(mailbox, stream) pairs failing.  Without a meter provider the OpenTelemetry API is a no-op, so
recording costs nothing locally and in tests that do not look.

**Export.**  ``enable_azure_monitor`` configures the Azure Monitor OpenTelemetry distro when
``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (the function app in Azure): metrics go to
``customMetrics`` and the ``sync.*`` loggers' records to ``traces`` with their
``customDimensions``.  Those records then stop propagating to the worker's root handler, or each
line would reach Application Insights twice (once through the host without its dimensions).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import metrics

MailboxMode = Literal["plain", "hash"]
# The attributes every record carries while they are bound (customDimensions in Azure).
LOG_FIELDS: tuple[str, ...] = ("job_id", "run_id", "mailbox", "stream", "kind")
CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
RESOURCE_DETECTORS = "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"
AUTO_INSTRUMENTATIONS: tuple[str, ...] = (
    "azure_sdk",
    "django",
    "fastapi",
    "flask",
    "psycopg2",
    "requests",
    "urllib",
    "urllib3",
    "httpx",
)

_CONTEXT: dict[str, contextvars.ContextVar[str]] = {
    name: contextvars.ContextVar(f"sync_{name}", default="") for name in LOG_FIELDS
}
_mode: MailboxMode = "plain"


def mailbox_label(mailbox: str, mode: MailboxMode | None = None) -> str:
    """The mailbox as logs show it: the address, or ``h:`` + a stable hash of it."""
    if (mode or _mode) == "plain" or not mailbox:
        return mailbox
    return "h:" + hashlib.sha256(mailbox.strip().lower().encode("utf-8")).hexdigest()[:16]


def set_mailbox_mode(mode: MailboxMode) -> None:
    global _mode
    _mode = mode


@contextlib.contextmanager
def bind(**fields: str | None) -> Iterator[None]:
    """Bind log fields (``LOG_FIELDS``) for the duration of the block; None leaves a field as
    it is.  Nested blocks add to or override the outer ones."""
    unknown = set(fields) - set(LOG_FIELDS)
    if unknown:
        raise ValueError(f"not log fields: {', '.join(sorted(unknown))}")
    tokens = [
        (_CONTEXT[name], _CONTEXT[name].set(str(value)))
        for name, value in fields.items()
        if value is not None
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str]:
    """The bound fields, as records get them (the mailbox labelled)."""
    out = {name: var.get() for name, var in _CONTEXT.items() if var.get()}
    if "mailbox" in out:
        out["mailbox"] = mailbox_label(out["mailbox"])
    return out


_previous_factory: Any = None


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record: logging.LogRecord = _previous_factory(*args, **kwargs)
    # A call's ``extra=`` naming one of these fields would now raise (logging refuses to
    # overwrite a record's attribute): bind the field instead.
    for name, value in current().items():
        setattr(record, name, value)
    return record


def install_log_context(mode: MailboxMode = "plain") -> None:
    """Every record created from now on carries the bound fields.  Idempotent."""
    global _previous_factory
    set_mailbox_mode(mode)
    if _previous_factory is None:
        _previous_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_factory)


# ------------------------------------------------------------------------------------ metrics

RUNS = "sync_runs"
ITEMS = "sync_items"
LINK_LATENCY = "sync_link_latency"
QUEUE_DEPTH = "sync_queue_depth"
POISON_DEPTH = "sync_poison_depth"
FAILING = "sync_failing_streams"
METRIC_NAMES: tuple[str, ...] = (RUNS, ITEMS, LINK_LATENCY, QUEUE_DEPTH, POISON_DEPTH, FAILING)
# Attributes (customDimensions) the metrics carry.
METRIC_ATTRIBUTES: tuple[str, ...] = ("stream", "kind", "outcome", "action", "queue")


class Metrics:
    """The service's instruments, from one meter provider."""

    def __init__(self, provider: metrics.MeterProvider | None = None) -> None:
        meter = (provider or metrics.get_meter_provider()).get_meter("sync")
        self.runs = meter.create_counter(
            RUNS, unit="{run}", description="Job runs, by stream, kind and outcome"
        )
        self.items = meter.create_counter(
            ITEMS, unit="{item}", description="A run's counts, by stream and action"
        )
        self.link_latency = meter.create_histogram(
            LINK_LATENCY,
            unit="s",
            description="From a notification's job being queued to its sent emails linked",
        )
        self.queue_depth = meter.create_gauge(QUEUE_DEPTH, description="Jobs waiting")
        self.poison_depth = meter.create_gauge(POISON_DEPTH, description="Poison messages")
        self.failing = meter.create_gauge(
            FAILING, description="(mailbox, stream) pairs whose last run failed"
        )


METRICS = Metrics()
_exporting = False


def use_meter_provider(provider: metrics.MeterProvider | None, *, export: bool = True) -> Metrics:
    """Record to ``provider`` from now on (None: the global one), which exports (or not: a
    test's reset).  Returns the instruments."""
    global METRICS, _exporting
    METRICS = Metrics(provider)
    _exporting = export
    return METRICS


def exporting() -> bool:
    """Whether metrics go anywhere (gauges that cost storage reads are measured only then)."""
    return _exporting


LINKED_STATE = "state_linked"  # the sent stream's count of emails linked in the run


@dataclass(frozen=True)
class RunOutcome:
    stream: str
    kind: str
    status: str
    counts: Mapping[str, int]
    reason: str = ""
    queued_seconds: float | None = None  # from the job being queued to the run's end


def record_run(outcome: RunOutcome) -> None:
    """Metrics of one finished run."""
    base = {"stream": outcome.stream, "kind": outcome.kind}
    METRICS.runs.add(1, {**base, "outcome": outcome.status})
    for action, n in outcome.counts.items():
        if n > 0:
            METRICS.items.add(n, {**base, "action": action})
    linked = outcome.counts.get(LINKED_STATE, 0)
    if outcome.reason == "notification" and linked > 0 and outcome.queued_seconds is not None:
        METRICS.link_latency.record(max(outcome.queued_seconds, 0.0), {"stream": outcome.stream})


def record_depths(queue: str, depth: int, poison_depth: int) -> None:
    METRICS.queue_depth.set(depth, {"queue": queue})
    METRICS.poison_depth.set(poison_depth, {"queue": queue})


def record_failing(count: int) -> None:
    METRICS.failing.set(count)


# ------------------------------------------------------------------------------------- export


def enable_azure_monitor(environ: Mapping[str, str] | None = None) -> bool:
    """Send metrics and the ``sync.*`` records to Application Insights when a connection string
    is set.  The distro's automatic instrumentations (HTTP clients, Azure SDK spans) stay off:
    the host records each invocation already, and a span per storage call would cost more
    ingestion than it tells.  True if enabled."""
    env = os.environ if environ is None else environ
    connection = env.get(CONNECTION_STRING, "").strip()
    if not connection:
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor

    # The distro's default resource detectors include the VM one, which asks the instance
    # metadata endpoint at start-up; a function app is an App Service site (its name becomes
    # cloud_RoleName), so only that detector runs unless the operator chose otherwise.
    os.environ.setdefault(RESOURCE_DETECTORS, "azure_app_service")
    off = {"enabled": False}
    configure_azure_monitor(
        connection_string=connection,
        logger_name="sync",
        enable_live_metrics=False,
        instrumentation_options={name: off for name in AUTO_INSTRUMENTATIONS},
    )
    use_meter_provider(None)
    # The distro's handler now exports these records with their dimensions; the worker's root
    # handler would send each one again, without them.
    logging.getLogger("sync").propagate = False
    return True
