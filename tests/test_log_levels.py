"""SYNC_LOG_LEVEL applies in Azure too, and the SDKs' per-request logging stays quiet.

In Azure the Python worker puts its handler on the root logger at INFO; these tests do the same
and look at which records reach that handler.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.log_levels import SDK_LOGGERS, SERVICE_LOGGER, configure_logging, read_levels
from sync.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]
HTTP_LOGGING = "azure.core.pipeline.policies.http_logging_policy"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def worker_root() -> Iterator[Collect]:
    """The root logger as the Functions Python worker sets it up; levels restored after."""
    names = (SERVICE_LOGGER, *SDK_LOGGERS, "")
    saved = {name: logging.getLogger(name).level for name in names}
    handler = Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _emit_samples() -> None:
    logging.getLogger("sync.worker").debug("service debug")
    logging.getLogger("sync.worker").info("service info")
    logging.getLogger(HTTP_LOGGING).info("Request URL: 'https://x.table.core.windows.net/'")
    logging.getLogger("azure.identity.aio").info("ManagedIdentityCredential.get_token succeeded")
    logging.getLogger("httpx").info("HTTP Request: POST https://login.microsoftonline.com/")
    logging.getLogger(HTTP_LOGGING).warning("sdk warning")


def _messages(handler: Collect) -> list[str]:
    return [r.getMessage() for r in handler.records]


def test_defaults_keep_service_info_and_drop_sdk_request_lines(worker_root: Collect) -> None:
    levels = configure_logging({})
    assert (levels.service, levels.sdk) == ("INFO", "WARNING")
    _emit_samples()
    assert _messages(worker_root) == ["service info", "sdk warning"]


def test_sync_log_level_is_applied(worker_root: Collect) -> None:
    configure_logging({"SYNC_LOG_LEVEL": "DEBUG"})
    _emit_samples()
    assert _messages(worker_root) == ["service debug", "service info", "sdk warning"]
    worker_root.records.clear()
    configure_logging({"SYNC_LOG_LEVEL": "WARNING"})
    _emit_samples()
    assert _messages(worker_root) == ["sdk warning"]


def test_sdk_request_logging_can_be_turned_on(worker_root: Collect) -> None:
    configure_logging({"SYNC_SDK_LOG_LEVEL": "INFO"})
    _emit_samples()
    assert "Request URL: 'https://x.table.core.windows.net/'" in _messages(worker_root)
    assert "HTTP Request: POST https://login.microsoftonline.com/" in _messages(worker_root)


def test_a_bad_level_falls_back_here_and_is_reported_by_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert read_levels({"SYNC_LOG_LEVEL": "LOUD"}).service == "INFO"
    assert read_levels({"sync_log_level": "ERROR"}).service == "ERROR"  # names as pydantic reads
    monkeypatch.setenv("SYNC_LOG_LEVEL", "LOUD")
    with pytest.raises(SettingsError, match="SYNC_LOG_LEVEL"):
        load_settings()


def test_function_app_applies_the_levels_at_import() -> None:
    """What the worker does in Azure: root at INFO with its handler, then import function_app.
    Runs in a fresh interpreter so the import really happens, with no storage settings at all
    (as infra/package.sh imports it)."""
    script = f"""
import json, logging
records = []
class H(logging.Handler):
    def emit(self, record): records.append(record.getMessage())
logging.getLogger().addHandler(H()); logging.getLogger().setLevel(logging.INFO)
import function_app
logging.getLogger("sync.engine").debug("service debug")
logging.getLogger("{HTTP_LOGGING}").info("sdk request")
print(json.dumps(records))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_", "AzureWebJobs"))}
    env["SYNC_LOG_LEVEL"] = "DEBUG"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["service debug"]
