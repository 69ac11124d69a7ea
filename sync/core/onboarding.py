"""Reading a CSV of mailboxes to register (``python -m sync mailboxes import``), row by row (pure).

Columns (a header row is required; only ``mailbox``, ``workbooks_url`` and ``api_key_ref`` are
required)::

    mailbox,workbooks_url,api_key_ref,workbooks_user,graph_user,policy
    ann@contoso.com,https://secure.workbooks.com,keyvault:workbooks-ann,ann@contoso.com,,"{""email_policy"": ""auto""}"

A bad row is reported with its reason and never stops the others: each row becomes either a
``Mailbox`` or a ``RowProblem``.  A mailbox listed twice is refused the second time.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from pydantic import ValidationError

from sync.core.state_models import Mailbox, MailboxPolicy

COLUMNS: tuple[str, ...] = (
    "mailbox",
    "workbooks_url",
    "api_key_ref",
    "workbooks_user",
    "graph_user",
    "policy",
)
REQUIRED: tuple[str, ...] = ("mailbox", "workbooks_url", "api_key_ref")
MAX_ROWS = 10_000


class ImportFileError(ValueError):
    """The file as a whole cannot be read (no header, unknown or missing columns)."""


@dataclass(frozen=True)
class RowProblem:
    line: int
    mailbox: str
    reason: str


@dataclass(frozen=True)
class Row:
    line: int
    mailbox: Mailbox


def problems(exc: ValidationError | json.JSONDecodeError) -> str:
    """What is wrong, field by field, without repeating the input (a rejected key reference is
    typically the key itself)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"policy is not JSON: {exc.msg} (column {exc.colno})"
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or exc.title}: "
        + str(err["msg"]).removeprefix("Value error, ")
        for err in exc.errors()
    )


def parse_rows(text: str) -> list[Row | RowProblem]:
    """Every data row of the CSV ``text``, in order.  ImportFileError for a file that has no
    usable header."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in reader.fieldnames or [] if h is not None]
    if not header:
        raise ImportFileError("the file is empty: the first line names the columns")
    unknown = [h for h in header if h not in COLUMNS]
    missing = [c for c in REQUIRED if c not in header]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown column(s) {', '.join(unknown)}")
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        raise ImportFileError(f"{'; '.join(parts)}; the columns are {', '.join(COLUMNS)}")
    reader.fieldnames = header
    out: list[Row | RowProblem] = []
    seen: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num
        if len(out) >= MAX_ROWS:
            raise ImportFileError(f"more than {MAX_ROWS} rows: split the file")
        values = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        if None in raw:
            out.append(RowProblem(line, values.get("mailbox", ""), "more values than columns"))
            continue
        if not any(values.values()):
            continue  # a blank line
        out.append(_row(line, values, seen))
    return out


def _row(line: int, values: dict[str, str], seen: dict[str, int]) -> Row | RowProblem:
    name = values.get("mailbox", "")
    try:
        policy = MailboxPolicy.model_validate(json.loads(values.get("policy") or "{}"))
        mailbox = Mailbox(
            id=name,
            graph_user=values.get("graph_user", ""),
            workbooks_url=values.get("workbooks_url", ""),
            workbooks_user=values.get("workbooks_user", ""),
            api_key_ref=values.get("api_key_ref", ""),
            policy=policy,
        )
    except (ValidationError, json.JSONDecodeError) as exc:
        return RowProblem(line, name, problems(exc))
    if mailbox.id in seen:
        return RowProblem(line, mailbox.id, f"listed twice (first on line {seen[mailbox.id]})")
    seen[mailbox.id] = line
    return Row(line, mailbox)


def same_registration(a: Mailbox, b: Mailbox) -> bool:
    """The fields an import sets are equal (state, dates and the like aside)."""
    keys = ("id", "graph_user", "workbooks_url", "workbooks_user", "api_key_ref", "policy")
    return all(getattr(a, k) == getattr(b, k) for k in keys)
