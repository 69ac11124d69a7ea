"""The HTTP blueprint and the CLI commands for explanations and explicit attachment."""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote

import azure.functions as func
import pytest

from sync.blueprints import emails as bp_emails
from sync.cli import emails as cli
from sync.core.email_linking import CASE, PERSON
from tests.support.world import World

from .conftest import ANN


def _call(fn: Any, method: str, route: dict[str, str], body: Any = None, params: Any = None) -> Any:
    raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
    req = func.HttpRequest(
        method=method,
        url="http://localhost/api/emails",
        headers={},
        params=params or {},
        route_params=route,
        body=raw,
    )
    return fn.build().get_user_function()(req)


async def test_http_explain_and_attach(ann: World, strategy: str) -> None:
    w = ann
    pid = w.person("Pat", "pat@cust.com")
    case_id = w.case()
    mid = w.send(ANN, to=["pat@cust.com"], categories=["Workbooks"], internet_message_id="<h@x>")
    await w.run(ANN)
    resp = await _call(bp_emails.email_explain, "GET", {"mailbox": ANN, "message": quote("<h@x>")})
    assert resp.status_code == 200
    assert json.loads(resp.get_body())["linked"] == [f"{PERSON}:{pid}"]
    by_id = await _call(
        bp_emails.email_explain, "GET", {"mailbox": ANN, "message": "by-id"}, params={"id": mid}
    )
    assert by_id.status_code == 200 and json.loads(by_id.get_body())["message_key"] == mid
    missing = await _call(bp_emails.email_explain, "GET", {"mailbox": ANN, "message": "nope"})
    assert missing.status_code == 404

    ok = await _call(
        bp_emails.email_attach,
        "POST",
        {"mailbox": ANN},
        {"message_id": mid, "record": f"CASE-{case_id}"},
    )
    if strategy == "render_with":  # the email was filed against Pat when it was created
        assert ok.status_code == 404 and b"only when it is created" in ok.get_body()
        assert w.links() == [(w.emails()[0]["id"], PERSON, pid)] and len(w.emails()) == 1
    else:
        assert ok.status_code == 200, ok.get_body()
        assert f"{CASE}:{case_id}" in json.loads(ok.get_body())["linked"]
        assert len(w.links()) == 2 and len(w.emails()) == 1
    unknown = await _call(
        bp_emails.email_attach,
        "POST",
        {"mailbox": ANN},
        {"message_id": mid, "record_type": CASE, "record_id": 424242},
    )
    assert unknown.status_code == 404 and "424242" in unknown.get_body().decode()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "JSON object"),
        ({"record": "CASE-1"}, "message_id"),
        ({"message_id": "m", "record": "TICKET-1"}, "object reference"),
        ({"message_id": "m"}, "record_type"),
        ({"message_id": "m", "record_type": CASE, "record_id": "x"}, "positive integer"),
    ],
)
async def test_http_attach_rejects_bad_input(body: Any, needle: str) -> None:
    resp = await _call(bp_emails.email_attach, "POST", {"mailbox": ANN}, body)
    assert resp.status_code == 400 and needle in resp.get_body().decode()


async def test_http_attach_refuses_oversized_body() -> None:
    body = b'{"message_id": "m", "record": "CASE-1", "pad": "' + b"x" * 20_000 + b'"}'
    resp = await _call(bp_emails.email_attach, "POST", {"mailbox": ANN}, body)
    assert resp.status_code == 413 and "larger than" in resp.get_body().decode()


async def test_cli_explain_and_attach(
    ann: World, strategy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    w = ann
    w.person("Pat", "pat@cust.com")
    case_id = w.case()
    mid = w.send(ANN, to=["pat@cust.com", "bob@example.com"], categories=["Workbooks"])
    await w.run(ANN)
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["explain", ANN, mid])
    assert await cli.run(args, w.services) == 0
    out = capsys.readouterr().out
    assert "linked" in out and "main_location[email]" in out and "internal (example.com)" in out
    assert await cli.run(parser.parse_args(["explain", ANN, "nope"]), w.services) == 1
    attached = await cli.run(parser.parse_args(["attach", ANN, mid, f"CASE-{case_id}"]), w.services)
    if strategy == "render_with":  # no record can be added to an email that exists
        assert attached == 1 and "only when it is created" in capsys.readouterr().err
        assert len(w.links()) == 1
    else:
        assert attached == 0
        assert (w.links()[-1][1], w.links()[-1][2]) == (CASE, case_id) or len(w.links()) == 2
    assert await cli.run(parser.parse_args(["attach", ANN, mid, "bogus"]), w.services) == 2
