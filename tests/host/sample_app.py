"""A throwaway function app for the local host's tests: every trigger and binding kind the
host supports.  Queue names and the timer schedule come from app settings (``%NAME%``) so
each test can use its own queues."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# (function, payload, dequeue_count) for every invocation, so tests can see what ran.
EVENTS: list[tuple[str, str, int]] = []
# How many ``work`` invocations ran at the same time (the host's batchSize/newBatchThreshold).
CONCURRENCY = {"now": 0, "max": 0}
_lock = threading.Lock()


def _json(payload: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(payload), status_code=status, mimetype="application/json")


@app.route(route="items/{id:int}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def item(req: func.HttpRequest) -> func.HttpResponse:
    return _json(
        {
            "method": req.method,
            "route": dict(req.route_params),
            "params": dict(req.params),
            "body": req.get_body().decode(),
            "header": req.headers.get("x-sample"),
            "url": req.url,
        }
    )


@app.route(route="items/{name:alpha}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def item_by_name(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"name": req.route_params["name"], "sync": True})


@app.route(route="files/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def files(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"path": req.route_params.get("path")})


@app.route(route="greet/{name?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def greet(req: func.HttpRequest) -> str:
    return f"hello {req.route_params.get('name', 'nobody')}"


@app.route(route="custom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def custom(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        b"\x00\x01binary",
        status_code=201,
        headers={"X-Sample": "yes", "Set-Cookie": "a=1"},
        mimetype="application/octet-stream",
    )


@app.route(route="text", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def text(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("plain", status_code=202)


@app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@app.route(route="burn/{ms:int}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def burn(req: func.HttpRequest) -> func.HttpResponse:
    """Spends ``ms`` of CPU: half itself, half in a task it starts (the CPU ledger's test)."""
    half = int(req.route_params["ms"]) / 2000
    _spin(half)
    await asyncio.sleep(0)
    await asyncio.create_task(_burn_later(half))
    return func.HttpResponse("burnt")


async def _burn_later(seconds: float) -> None:
    await asyncio.sleep(0)
    _spin(seconds)


@app.route(route="secure", methods=["GET"])  # the app default: AuthLevel.FUNCTION
async def secure(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("secret stuff")


@app.route(route="enqueue", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.queue_output(
    arg_name="out", queue_name="%SAMPLE_WORK_QUEUE%", connection="AzureWebJobsStorage"
)
async def enqueue(req: func.HttpRequest, out: func.Out[list[str]]) -> func.HttpResponse:
    out.set(req.get_body().decode().splitlines())  # one message per line
    return func.HttpResponse(status_code=202)


@app.queue_trigger(
    arg_name="msg", queue_name="%SAMPLE_WORK_QUEUE%", connection="AzureWebJobsStorage"
)
@app.queue_output(
    arg_name="done", queue_name="%SAMPLE_DONE_QUEUE%", connection="AzureWebJobsStorage"
)
def work(msg: func.QueueMessage, done: func.Out[str]) -> None:
    body = msg.get_body().decode()
    count = int(getattr(msg, "dequeue_count", 0) or 0)
    EVENTS.append(("work", body, count))
    if body.startswith("slow"):
        with _lock:
            CONCURRENCY["now"] += 1
            CONCURRENCY["max"] = max(CONCURRENCY["max"], CONCURRENCY["now"])
        time.sleep(0.1)
        with _lock:
            CONCURRENCY["now"] -= 1
    if "fail" in body:
        raise ValueError(f"asked to fail: {body}")
    done.set(f"done:{body}")


@app.timer_trigger(schedule="%SAMPLE_SCHEDULE%", arg_name="timer")
async def tick(timer: func.TimerRequest) -> None:
    EVENTS.append(("tick", "past_due" if timer.past_due else "on_time", 0))
