"""Every query in docs/operations.md and docs/deploy.md uses names the code emits: the tables it reads, the request
names (the app's functions), the custom metrics' names, the fields of ``customDimensions``
(the run context of log records and the metrics' attributes), and the worker line's pattern
(the one the failing-mailbox alert parses, which tests/test_alert_queries.py checks against the
real worker's lines).  The guide's list of request names is the app's list of functions."""

from __future__ import annotations

import re
from pathlib import Path

import function_app
from sync import telemetry
from sync.core.state_models import RunRecord
from tests.test_alert_queries import _query

DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
DEPLOY = DOC.with_name("deploy.md")
TABLES = {"requests", "traces", "exceptions", "customMetrics"}


def _functions() -> set[str]:
    return {str(b.build().get_function_name()) for b in function_app.app._function_builders}


def _queries() -> list[str]:
    """The kusto blocks of operations.md and deploy.md, and the queries the alerts table quotes
    inline (with escaped pipes)."""
    found: list[str] = []
    for doc in (DOC, DEPLOY):
        text = doc.read_text(encoding="utf-8")
        found += re.findall(r"```kusto\n(.*?)```", text, re.DOTALL)
        inline = re.findall(r"`((?:traces|requests|customMetrics) \\\|[^`]*)`", text)
        found += [q.replace("\\|", "|") for q in inline]
    return found


def _strings(text: str) -> list[str]:
    return re.findall(r'"([^"]*)"', text)


def test_the_guide_has_queries_for_metrics_and_run_fields() -> None:
    queries = "\n".join(_queries())
    assert len(_queries()) >= 10
    assert "customMetrics" in queries and "customDimensions.run_id" in queries


def test_every_query_reads_known_tables_and_names_real_functions_and_metrics() -> None:
    known = _functions() | set(telemetry.METRIC_NAMES)
    for query in _queries():
        table = query.strip().removeprefix("let runs = ").split()[0]
        assert table in TABLES, query
        for op, operand in re.findall(
            r"\bname\s+(==|in|endswith|startswith)\s+(\([^)]*\)|\"[^\"]*\")", query
        ):
            names = _strings(operand)
            assert names, query
            for name in names:
                if op == "endswith":
                    assert any(f.endswith(name) for f in known), (name, query)
                elif op == "startswith":
                    assert any(f.startswith(name) for f in known), (name, query)
                else:
                    assert name in known, (name, query)
        if "customMetrics" in query:
            assert re.search(r"\bname\b", query), query


def test_every_custom_dimension_is_one_the_code_writes() -> None:
    fields = set(telemetry.LOG_FIELDS) | set(telemetry.METRIC_ATTRIBUTES)
    outcomes = set(RunRecord.model_fields["status"].annotation.__args__)  # type: ignore[union-attr]
    used = set()
    for query in _queries():
        for field in re.findall(r"customDimensions(?:\.(\w+)|\[\"(\w+)\"\])", query):
            name = field[0] or field[1]
            assert name in fields, (name, query)
            used.add(name)
        for value in re.findall(r'customDimensions\.outcome\s*==\s*"([^"]*)"', query):
            assert value in outcomes, query
        for value in re.findall(r'customDimensions\.action\s*==\s*"([^"]*)"', query):
            assert value == telemetry.LINKED_STATE, query
    assert {"run_id", "mailbox", "stream", "kind", "outcome", "action"} <= used


def test_the_worker_line_pattern_is_the_alerts() -> None:
    """The guide parses the worker's line with the same pattern as the alert, which the alert
    test applies to real lines."""
    alert = re.search(r"\| parse message with (.+)", _query('startswith "job "'))
    assert alert
    patterns = {m.strip() for q in _queries() for m in re.findall(r"\| parse message with (.+)", q)}
    assert patterns == {alert[1].strip()}


def test_the_listed_request_names_are_the_apps_functions() -> None:
    text = DOC.read_text(encoding="utf-8")
    sentence = re.search(r"named after the function: (.*?)\. \(", text, re.DOTALL)
    assert sentence
    listed = set(re.findall(r"`(\w+)`", sentence[1]))
    assert listed == _functions()
