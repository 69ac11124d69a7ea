"""A run can be followed in the logs, and its metrics are emitted.

The jobs run through the real queue-triggered worker on Azurite.  The log records are the ones
the service writes (captured at the root, as the Functions worker's handler sees them, and
through OpenTelemetry's logging handler, which is what turns a record's attributes into
``customDimensions`` in Application Insights); the metrics are read with an in-memory reader.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.queue import QueueMessage
from azure.monitor.opentelemetry.exporter.export.logs._exporter import _convert_log_to_envelope
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sync import telemetry
from sync.blueprints import worker
from sync.core.errors import ReauthRequired
from sync.core.jobs import Job, JobKind, Stream, encode_job
from sync.core.state_models import Mailbox
from sync.engine import registry
from sync.engine.health import observe
from sync.engine.registry import RunContext
from sync.log_levels import configure_logging
from sync.status import status_report
from tests.functions.helpers import user_function

ANN = "ann@example.com"
PROCESSOR_LINE = "processor working on the stream"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def root_records() -> Iterator[Collect]:
    """Records as the worker's root handler sees them, with the run context installed as the
    function app installs it."""
    configure_logging({})
    handler = Collect()
    root, service = logging.getLogger(), logging.getLogger("sync")
    saved = (root.level, service.level)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    service.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        service.setLevel(saved[1])
        telemetry.set_mailbox_mode("plain")


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    metric_reader = InMemoryMetricReader()
    telemetry.use_meter_provider(MeterProvider(metric_readers=[metric_reader]))
    try:
        yield metric_reader
    finally:
        telemetry.use_meter_provider(None, export=False)


async def _register(services: Any) -> None:
    await services.store.mailboxes.put(
        Mailbox(id=ANN, workbooks_url="https://secure.workbooks.com", api_key_ref="env:K")
    )
    services.settings.app.webhook_memo_seconds = 0


async def _deliver(job: Job) -> None:
    message = QueueMessage(
        id="m1", body=base64.b64decode(encode_job(job)), dequeue_count=1, pop_receipt="p"
    )
    await user_function(worker.sync_worker)(message)


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


async def test_every_record_of_a_run_names_its_job_run_mailbox_stream_and_kind(
    services: Any, monkeypatch: pytest.MonkeyPatch, root_records: Collect
) -> None:
    await _register(services)

    async def working(ctx: RunContext) -> None:
        logging.getLogger("sync.engine.contacts").info(PROCESSOR_LINE)
        ctx.count("created", 1)

    monkeypatch.setitem(registry._PROCESSORS, (Stream.CONTACTS, JobKind.RECONCILE), working)
    job = Job(mailbox=ANN, stream=Stream.CONTACTS, kind=JobKind.RECONCILE)
    await _deliver(job)

    [run] = await services.store.runs.recent(ANN, 1)
    assert run.status == "ok" and len(run.run_id) == 12
    mine = [r for r in root_records.records if r.name.startswith("sync")]
    inside = [r for r in mine if r.getMessage() == PROCESSOR_LINE]
    line = [r for r in mine if r.name == "sync.worker" and r.getMessage().startswith("job ")]
    assert len(inside) == 1 and len(line) == 1
    for record in (inside[0], line[0]):
        fields = {name: getattr(record, name, None) for name in telemetry.LOG_FIELDS}
        assert fields == {
            "job_id": job.job_id,
            "run_id": run.run_id,
            "mailbox": ANN,
            "stream": "contacts",
            "kind": "reconcile",
        }
    # Outside the run nothing is bound: a record written now carries none of the fields.
    logging.getLogger("sync.test").warning("after the run")
    after = root_records.records[-1]
    assert all(not hasattr(after, name) for name in telemetry.LOG_FIELDS)


async def test_the_fields_reach_opentelemetry_as_attributes_and_the_mailbox_can_be_hashed(
    services: Any, monkeypatch: pytest.MonkeyPatch, root_records: Collect
) -> None:
    """The OpenTelemetry logging handler the distro installs turns the record's attributes into
    the log's attributes, which the Azure Monitor exporter sends as ``customDimensions``."""
    await _register(services)
    configure_logging({"SYNC_LOG_MAILBOX": "hash"})
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    logging.getLogger("sync").addHandler(handler)

    async def failing(ctx: RunContext) -> None:
        logging.getLogger("sync.engine.contacts").warning(PROCESSOR_LINE)
        raise ReauthRequired("Workbooks answered 401", source="workbooks")

    monkeypatch.setitem(registry._PROCESSORS, (Stream.CONTACTS, JobKind.PUSH), failing)
    job = Job(mailbox=ANN, stream=Stream.CONTACTS, kind=JobKind.PUSH)
    try:
        await _deliver(job)
    finally:
        logging.getLogger("sync").removeHandler(handler)
    hashed = "h:" + hashlib.sha256(ANN.encode()).hexdigest()[:16]
    exported = exporter.get_finished_logs()
    bodies = {str(log.log_record.body): dict(log.log_record.attributes or {}) for log in exported}
    assert PROCESSOR_LINE in bodies
    attributes = bodies[PROCESSOR_LINE]
    assert attributes["mailbox"] == hashed and ANN not in str(attributes)
    assert attributes["job_id"] == job.job_id and attributes["stream"] == "contacts"
    assert attributes["kind"] == "push" and len(str(attributes["run_id"])) == 12
    # What the Azure Monitor exporter sends: the attributes are the trace's customDimensions.
    envelope = _convert_log_to_envelope(
        next(log for log in exported if str(log.log_record.body) == PROCESSOR_LINE)
    )
    dimensions = envelope.data.base_data.properties  # type: ignore[union-attr]
    assert {k: dimensions[k] for k in telemetry.LOG_FIELDS} == {
        k: str(attributes[k]) for k in telemetry.LOG_FIELDS
    }
    worker_line = next(b for b in bodies if b.startswith("job "))
    assert f"{hashed}/contacts push: failed" in worker_line and ANN not in worker_line


async def test_runs_items_latency_depths_and_failing_streams_are_measured(
    services: Any, monkeypatch: pytest.MonkeyPatch, reader: InMemoryMetricReader
) -> None:
    await _register(services)

    async def linked(ctx: RunContext) -> None:
        ctx.count("state_linked", 3)
        ctx.count("messages", 4)

    async def refused(ctx: RunContext) -> None:
        raise ReauthRequired("Graph answered 403", source="graph")

    monkeypatch.setitem(registry._PROCESSORS, (Stream.SENT, JobKind.DIRTY), linked)
    monkeypatch.setitem(registry._PROCESSORS, (Stream.EVENTS, JobKind.RECONCILE), refused)
    queued = datetime.now(UTC) - timedelta(seconds=7)
    await _deliver(
        Job(
            mailbox=ANN,
            stream=Stream.SENT,
            kind=JobKind.DIRTY,
            reason="notification",
            enqueued_at=queued,
        )
    )
    await _deliver(Job(mailbox=ANN, stream=Stream.EVENTS, kind=JobKind.RECONCILE))
    await services.queue.send(Job(mailbox=ANN, stream=Stream.TODO, kind=JobKind.PUSH))
    assert await observe(services)

    points = _points(reader)
    assert set(telemetry.METRIC_NAMES) <= set(points)
    runs = {
        (p.attributes["stream"], p.attributes["kind"], p.attributes["outcome"]): p.value
        for p in points[telemetry.RUNS]
    }
    assert runs == {("sent", "dirty", "ok"): 1, ("events", "reconcile", "failed"): 1}
    items = {
        (p.attributes["stream"], p.attributes["action"]): p.value for p in points["sync_items"]
    }
    assert items == {("sent", "state_linked"): 3, ("sent", "messages"): 4}
    [latency] = points[telemetry.LINK_LATENCY]
    assert latency.count == 1 and 7 <= latency.sum < 120
    [depth] = points[telemetry.QUEUE_DEPTH]
    assert depth.value == 1 and depth.attributes["queue"] == services.queue.name
    assert [p.value for p in points[telemetry.POISON_DEPTH]] == [0]
    assert [p.value for p in points[telemetry.FAILING]] == [1]

    # Status reads the same numbers and records them too.
    report = await status_report(services)
    assert report["failing_mailboxes"] == [ANN]


async def test_no_exporter_means_no_storage_reads_for_the_gauges(services: Any) -> None:
    telemetry.use_meter_provider(None, export=False)
    assert not await observe(services)
    assert not telemetry.enable_azure_monitor({})


def test_the_distro_is_configured_for_the_service_loggers_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What ``enable_azure_monitor`` asks of the distro.  The distro itself is not started here:
    it would send to the connection string's endpoint and ask the instance metadata service,
    neither of which exists on a test machine."""
    import azure.monitor.opentelemetry as distro

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(distro, "configure_azure_monitor", lambda **kw: calls.append(kw))
    monkeypatch.delenv(telemetry.RESOURCE_DETECTORS, raising=False)
    service = logging.getLogger("sync")
    monkeypatch.setattr(service, "propagate", True)
    try:
        enabled = telemetry.enable_azure_monitor(
            {telemetry.CONNECTION_STRING: "InstrumentationKey=00000000-0000-0000-0000-000000000000"}
        )
        assert enabled and telemetry.exporting()
        [kwargs] = calls
        assert kwargs["logger_name"] == "sync"
        assert kwargs["instrumentation_options"] == {
            name: {"enabled": False} for name in telemetry.AUTO_INSTRUMENTATIONS
        }
        assert not service.propagate  # each line reaches Application Insights once
        assert os.environ[telemetry.RESOURCE_DETECTORS] == "azure_app_service"
    finally:
        telemetry.use_meter_provider(None, export=False)
