"""The local host running tests/host/sample_app.py against a real Azurite."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.storage.queue.aio import QueueClient

from devkit.host import cpu_ledger
from devkit.host.functions import FunctionLoadError, import_app_module, index_app
from devkit.host.localhost import LocalHost
from tests.conftest import unique
from tests.host import sample_app

APP = "tests.host.sample_app"
FAST_RETRY = {
    "version": "2.0",
    "extensions": {
        "queues": {
            "maxDequeueCount": 2,
            "visibilityTimeout": "00:00:01",
            "maxPollingInterval": "00:00:01",
            "batchSize": 4,
            "newBatchThreshold": 2,
        }
    },
}


@pytest.fixture
def queues(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    names = {"work": unique("work"), "done": unique("done")}
    monkeypatch.setenv("SAMPLE_WORK_QUEUE", names["work"])
    monkeypatch.setenv("SAMPLE_DONE_QUEUE", names["done"])
    monkeypatch.setenv("SAMPLE_SCHEDULE", "*/1 * * * * *")
    monkeypatch.delenv("SYNC_LOCAL_FUNCTION_KEY", raising=False)
    monkeypatch.delenv("SYNC_LOCAL_MASTER_KEY", raising=False)
    return names


@pytest.fixture
async def host(queues: dict[str, str]) -> AsyncIterator[LocalHost]:
    async with LocalHost(APP, host_json=FAST_RETRY, timers=False) as h:
        yield h


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _client(connection: str, name: str) -> QueueClient:
    return QueueClient.from_connection_string(connection, name)  # no encode/decode policy


async def _raw_messages(connection: str, name: str) -> list[str]:
    async with _client(connection, name) as q:
        try:
            return [str(m.content) for m in await q.peek_messages(max_messages=32)]
        except Exception:
            return []


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- HTTP --------------------------------------------------------------------------------------


async def test_route_params_query_headers_and_body_reach_the_function(
    host: LocalHost, http: aiohttp.ClientSession
) -> None:
    url = f"{host.base_url}/api/items/42?q=x&q=y"
    async with http.post(url, data=b"payload", headers={"X-Sample": "h"}) as resp:
        assert resp.status == 200
        got = await resp.json()
    assert got["method"] == "POST"
    assert got["route"] == {"id": "42"}  # route params are passed, not parsed by HttpRequest
    assert got["params"] == {"q": "x,y"}
    assert got["body"] == "payload" and got["header"] == "h"
    assert got["url"].endswith("/api/items/42?q=x&q=y")


async def test_typed_segments_choose_the_route_and_unknown_paths_are_404(
    host: LocalHost, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{host.base_url}/api/items/abc") as resp:
        assert resp.status == 200 and await resp.json() == {"name": "abc", "sync": True}
    for path in ("/api/items/4a", "/api/nope", "/items/42", "/api/items/42/more"):
        async with http.get(host.base_url + path) as resp:
            assert resp.status == 404, path


async def test_optional_and_catch_all_segments(
    host: LocalHost, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{host.base_url}/api/greet") as resp:
        assert await resp.text() == "hello nobody"
    async with http.get(f"{host.base_url}/api/greet/bob") as resp:
        assert await resp.text() == "hello bob"
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    async with http.get(f"{host.base_url}/api/files/a/b/c.txt") as resp:
        assert await resp.json() == {"path": "a/b/c.txt"}
    async with http.get(f"{host.base_url}/api/files") as resp:
        assert await resp.json() == {"path": None}


async def test_http_response_mapping(host: LocalHost, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{host.base_url}/api/custom") as resp:
        assert resp.status == 201
        assert resp.headers["X-Sample"] == "yes"
        assert resp.headers["Set-Cookie"] == "a=1"
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert await resp.read() == b"\x00\x01binary"
    async with http.get(f"{host.base_url}/api/text") as resp:
        assert resp.status == 202 and await resp.text() == "plain"
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    async with http.get(f"{host.base_url}/api/boom") as resp:
        assert resp.status == 500
    async with http.post(f"{host.base_url}/api/custom") as resp:
        assert resp.status == 405  # real host: 404 (see docs/local-host.md)
    assert host.invocations[-1].function == "boom" and not host.invocations[-1].ok


async def test_function_keys_only_when_configured(
    host: LocalHost, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with http.get(f"{host.base_url}/api/secure") as resp:
        assert resp.status == 200  # no key configured: like Core Tools, no check
    monkeypatch.setenv("SYNC_LOCAL_FUNCTION_KEY", "k3y")
    async with http.get(f"{host.base_url}/api/secure") as resp:
        assert resp.status == 401
    async with http.get(f"{host.base_url}/api/secure?code=wrong") as resp:
        assert resp.status == 401
    async with http.get(f"{host.base_url}/api/secure?code=k3y") as resp:
        assert resp.status == 200 and await resp.text() == "secret stuff"
    async with http.get(f"{host.base_url}/api/secure", headers={"x-functions-key": "k3y"}) as resp:
        assert resp.status == 200
    async with http.get(f"{host.base_url}/api/text") as resp:
        assert resp.status == 202  # anonymous routes never need a key


# -- queues ------------------------------------------------------------------------------------


async def test_queue_output_writes_base64_and_trigger_deletes_on_success(
    azurite_connection: str, queues: dict[str, str], http: aiohttp.ClientSession
) -> None:
    marker = unique("ok")
    # Queues off first: the message written by the output binding stays for inspection.
    async with (
        LocalHost(APP, host_json=FAST_RETRY, timers=False, queues=False) as h,
        http.post(f"{h.base_url}/api/enqueue", data=marker) as resp,
    ):
        assert resp.status == 202
    assert await _raw_messages(azurite_connection, queues["work"]) == [_b64(marker)]

    async with LocalHost(APP, host_json=FAST_RETRY, timers=False) as h:
        await h.drain(timeout=10)
        assert ("work", marker, 1) in sample_app.EVENTS
    assert await _raw_messages(azurite_connection, queues["work"]) == []
    assert await _raw_messages(azurite_connection, queues["done"]) == [_b64(f"done:{marker}")]


async def test_failures_retry_then_land_in_poison(
    azurite_connection: str, queues: dict[str, str], host: LocalHost, http: aiohttp.ClientSession
) -> None:
    marker = unique("fail")
    fine = unique("fine")
    async with http.post(f"{host.base_url}/api/enqueue", data=f"{marker}\n{fine}") as resp:
        assert resp.status == 202
    poison = f"{queues['work']}-poison"

    async def poisoned() -> bool:
        return bool(await _raw_messages(azurite_connection, poison))

    await _eventually(poisoned, timeout=15)
    await host.drain(timeout=10)
    counts = [n for (kind, body, n) in sample_app.EVENTS if body == marker]
    assert counts == [1, 2]  # maxDequeueCount 2, retried after visibilityTimeout 1 s
    assert await _raw_messages(azurite_connection, poison) == [_b64(marker)]  # still base64
    assert await _raw_messages(azurite_connection, queues["work"]) == []
    assert ("work", fine, 1) in sample_app.EVENTS
    assert host.listeners["work"].poisoned == 1 and host.listeners["work"].failed == 2


async def test_message_that_is_not_base64_goes_straight_to_poison(
    azurite_connection: str, queues: dict[str, str], host: LocalHost
) -> None:
    async with _client(azurite_connection, queues["work"]) as q:
        await q.send_message("plain text, not base64!")
    poison = f"{queues['work']}-poison"

    async def poisoned() -> bool:
        return bool(await _raw_messages(azurite_connection, poison))

    await _eventually(poisoned, timeout=10)
    assert await _raw_messages(azurite_connection, poison) == ["plain text, not base64!"]
    assert not [e for e in sample_app.EVENTS if "not base64" in e[1]]  # never invoked


async def test_drain_waits_for_a_burst_and_respects_concurrency(
    azurite_connection: str, queues: dict[str, str], host: LocalHost, http: aiohttp.ClientSession
) -> None:
    markers = [unique("slow") for _ in range(20)]
    sample_app.CONCURRENCY["max"] = 0
    async with http.post(f"{host.base_url}/api/enqueue", data="\n".join(markers)) as resp:
        assert resp.status == 202
    await host.drain(timeout=15)
    # batchSize 4 + newBatchThreshold 2: never more than 6 at once, and more than one.
    assert 2 <= sample_app.CONCURRENCY["max"] <= 6
    seen = {body for (_, body, _) in sample_app.EVENTS}
    assert set(markers) <= seen
    done = set()
    async with _client(azurite_connection, queues["done"]) as q:
        async for m in q.receive_messages(messages_per_page=32, max_messages=32):
            done.add(base64.b64decode(str(m.content)).decode())
    assert done == {f"done:{m}" for m in markers}


# -- timers ------------------------------------------------------------------------------------


async def test_timer_fires_from_its_setting_schedule(queues: dict[str, str]) -> None:
    async with LocalHost(APP, host_json=FAST_RETRY, timers=True, queues=False) as h:
        before = sum(1 for e in sample_app.EVENTS if e[0] == "tick")
        await asyncio.sleep(2.6)  # "*/1 * * * * *" from %SAMPLE_SCHEDULE%: every second
        fired = sum(1 for e in sample_app.EVENTS if e[0] == "tick") - before
        assert 2 <= fired <= 4
        await h.fire_timer("tick", past_due=True)
        assert sample_app.EVENTS[-1] == ("tick", "past_due", 0)


async def test_timers_can_be_disabled_and_fired_by_hand(queues: dict[str, str]) -> None:
    async with LocalHost(APP, timers=False, queues=False) as h:
        before = len(sample_app.EVENTS)
        await asyncio.sleep(1.2)
        assert len(sample_app.EVENTS) == before
        await h.fire_timer("tick")
        assert sample_app.EVENTS[-1] == ("tick", "on_time", 0)


# -- loading -----------------------------------------------------------------------------------


def test_an_app_can_be_indexed_repeatedly() -> None:
    module = import_app_module(APP)
    first = index_app(module)
    second = index_app(module)  # get_functions() twice on one app would raise ValueError
    assert set(first.functions) == set(second.functions)
    assert first.functions["work"].trigger["queueName"] == "%SAMPLE_WORK_QUEUE%"
    assert first.functions["item"].trigger["route"] == "items/{id:int}"
    with pytest.raises(FunctionLoadError):
        import_app_module("tests.host.no_such_module")


async def test_missing_setting_stops_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from devkit.host.appsettings import AppSettingError

    monkeypatch.delenv("SAMPLE_WORK_QUEUE", raising=False)
    monkeypatch.setenv("SAMPLE_SCHEDULE", "*/1 * * * * *")
    h: Any = LocalHost(APP, timers=False)
    with pytest.raises(AppSettingError):
        await h.start()


def test_the_project_function_app_is_fully_runnable_locally() -> None:
    """Every function in function_app.py uses only triggers and bindings the host supports,
    and indexing it here leaves the app indexable by anyone else exactly once."""
    module = import_app_module("function_app")
    before = module.app.functions_bindings
    indexed = index_app(module)
    assert indexed.skipped == {}
    assert module.app.functions_bindings == before
    kinds = {fn.trigger_type for fn in indexed.functions.values()}
    assert kinds <= {"httpTrigger", "timerTrigger", "queueTrigger"}
    host = LocalHost("function_app", host_json="host.json")
    host.load()
    routes = {route.template for _, route, _ in host.routes}
    assert "graph/notifications" in routes
    for line in host.describe():
        assert ": " in line


def test_serve_exits_2_on_bad_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from devkit.host.cli import main
    from sync.settings import get_settings

    monkeypatch.setenv("SYNC_JOBS_QUEUE", "Not_A_Queue_Name")
    try:
        assert main(["serve", "--port", "0", "--no-timers"]) == 2
    finally:
        get_settings.cache_clear()
    assert "SYNC_JOBS_QUEUE" in capsys.readouterr().err


async def test_the_cpu_ledger_charges_a_function_and_the_tasks_it_starts(
    queues: dict[str, str], http: aiohttp.ClientSession
) -> None:
    """What ``bench_throughput`` reports as the functions' own CPU: a function's work,
    including a task it starts, is charged to it; the host's HTTP handling is not."""
    cpu_ledger.install()
    try:
        async with LocalHost(APP, host_json=FAST_RETRY, timers=False) as host:
            before = cpu_ledger.snapshot()
            for _ in range(5):
                async with http.get(f"{host.base_url}/api/burn/40") as resp:
                    assert resp.status == 200 and await resp.text() == "burnt"
            async with http.get(f"{host.base_url}/api/text") as resp:
                assert resp.status == 202
            # Requests no function answers: the host's own HTTP handling, some milliseconds of
            # it, so its share is sampled (a few requests alone sometimes fell between samples).
            for _ in range(40):
                async with http.get(f"{host.base_url}/api/no-such-route") as resp:
                    assert resp.status == 404
            after = cpu_ledger.snapshot()
    finally:
        cpu_ledger.uninstall()
    spent = cpu_ledger.spent(before, after)
    # 5 x 40 ms, half of it in the task the function started; samples are 1 ms apart
    assert 0.170 <= spent["burn"] <= 0.260
    assert spent.get("text", 0.0) < 0.010
    assert spent.get(cpu_ledger.HOST, 0.0) > 0.0  # the test's client and the host's HTTP handling
    assert spent["burn"] > 0.5 * sum(spent.values())


def test_the_ledger_shares_the_process_cpu_out_by_samples(tmp_path: Path) -> None:
    before = {"samples": {"a": 10, cpu_ledger.HOST: 5}, "cpu": 1.0}
    after = {"samples": {"a": 40, cpu_ledger.HOST: 15, "b": 10}, "cpu": 1.5}
    got = cpu_ledger.spent(before, after)
    assert got == pytest.approx({"a": 0.3, cpu_ledger.HOST: 0.1, "b": 0.1})
    assert cpu_ledger.spent({}, after) == {}
    path = tmp_path / "ledger.json"
    assert cpu_ledger.read(path) == {}
    cpu_ledger.write(path)
    assert cpu_ledger.read(path)["cpu"] > 0.0
    path.write_text("{not json")
    assert cpu_ledger.read(path) == {}
