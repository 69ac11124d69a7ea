"""Pure encoding rules of the client, the sandbox's import boundary, and the CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from pydantic import SecretStr

from devkit.sandbox.workbooks import SandboxConfig, running_sandbox
from sync.workbooks import WorkbooksClient, WorkbooksIdentity, WriteOp, write_batch
from sync.workbooks.wire import (
    All,
    Any_,
    Cond,
    encode_filter,
    encode_square,
    in_list,
    wire_key,
    working_set,
)
from tests.support.local import free_port

from .conftest import ANN_KEY, FAST

ROOT = Path(__file__).resolve().parents[2]


def test_filter_expression_numbers_conditions_in_order():
    expr = All(
        (
            Cond("updated_at", "ge", "T"),
            Any_((Cond("is_deleted", "true"), Cond("is_deleted", "false"))),
            Cond("assigned_to", "eq", "6"),
        )
    )
    pairs = encode_filter(expr)
    assert pairs[-1] == ("_fm", "1 AND (2 OR 3) AND 4")
    assert [v for k, v in pairs if k == "_ff[]"] == [
        "updated_at",
        "is_deleted",
        "is_deleted",
        "assigned_to",
    ]
    assert [v for k, v in pairs if k == "_fc[]"] == ["T", "", "", "6"]


def test_square_encoding_flattens_nested_names_and_fills_no_value():
    pairs = encode_square(
        [
            ("PUT", 101, 7, {"main_location[email]": "new@x.com"}),
            (
                "POST",
                0,
                0,
                {"org_lead_party[main_location[email]]": None, "no_email_soliciting": True},
            ),
        ]
    )
    assert pairs == [
        ("__method[]", "PUT"),
        ("id[]", "101"),
        ("lock_version[]", "7"),
        ("main_location[email][]", "new@x.com"),
        ("no_email_soliciting[]", ":no_value:"),
        ("org_lead_party[main_location][email][]", ":no_value:"),
        ("__method[]", "POST"),
        ("id[]", "0"),
        ("lock_version[]", "0"),
        ("main_location[email][]", ":no_value:"),
        ("no_email_soliciting[]", "1"),
        ("org_lead_party[main_location][email][]", ":null_value:"),
    ]
    assert wire_key("name") == "name"


def test_in_list_escapes_commas_and_working_set_dedupes():
    assert in_list(["a@x.com", "odd,one@x.com"]) == "a@x.com,odd\\,one@x.com"
    assert working_set([0, 0]) == [("_ff[]", "id"), ("_ft[]", "eq"), ("_fc[]", "0")]
    assert working_set([5, 6])[-1] == ("_fm", "or")


def test_sandbox_imports_nothing_from_the_client():
    code = (
        "import sys, devkit.sandbox.workbooks, devkit.sandbox.workbooks.cli; "
        "bad = [m for m in sys.modules if m.startswith('sync.workbooks')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_client_wire_module_has_no_io_imports():
    """``wire`` is the pure half of the edge: encodings only, testable without HTTP."""
    import ast

    tree = ast.parse((ROOT / "sync" / "workbooks" / "wire.py").read_text())
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.split(".")[0] in ("aiohttp", "azure", "httpx")}


async def test_retry_after_and_delaying_url_are_honoured():
    config = SandboxConfig(throttle_location="delay", retry_after_seconds=0)
    async with running_sandbox(config) as sandbox:
        identity = WorkbooksIdentity(sandbox.base_url, SecretStr(ANN_KEY))
        slow_backoff = dataclasses.replace(FAST, backoff_base_seconds=30, backoff_max_seconds=30)
        async with WorkbooksClient(identity, slow_backoff) as wb:
            await wb.ensure_login()
            sandbox.state.faults.throttle_next = 2
            started = time.monotonic()
            [result] = await write_batch(wb, "crm/people", [WriteOp.create({"name": "X"})])
            assert result.ok
            assert time.monotonic() - started < 5  # Retry-After: 0 beat the 30 s backoff
            assert wb.calls["PUT crm/people"] == 3


async def _status(url: str) -> int:
    async with aiohttp.ClientSession(headers={"User-Agent": "t"}) as http:
        for _ in range(100):
            try:
                async with http.get(url) as resp:
                    return resp.status
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    raise AssertionError("server did not start")


async def test_cli_runs_standalone_with_and_without_controls():
    for flags, expected in (([], 200), (["--no-sim-controls"], 404)):
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "devkit.sandbox", "workbooks", "--port", str(port), *flags),
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            assert await _status(f"http://127.0.0.1:{port}/_sim/stats") == expected
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), timeout=10)
    unknown = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "devkit.sandbox", "nope"),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await unknown.wait() == 2
