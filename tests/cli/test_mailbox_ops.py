"""``mailboxes import``, ``show`` and ``update`` as an operator runs them (a real subprocess),
against Azurite, the Graph sandbox and the Workbooks sandbox: each CSV row is checked live and
reported (added, refused with its reason, unchanged) without stopping at a bad row; a policy
change is merged and validated, and a refused one changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import UPN, sync_cli

HEADER = "mailbox,workbooks_url,api_key_ref,workbooks_user,graph_user,policy"


def _csv(path: Path, rows: list[str]) -> str:
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return str(path)


def _lines(out: str) -> dict[int, str]:
    found: dict[int, str] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "line" and parts[1].isdigit():
            found[int(parts[1])] = line
    return found


@pytest.mark.slow
async def test_import_reports_every_row_and_never_stops_at_a_bad_one(
    world: tuple[dict[str, str], Any], tmp_path: Path
) -> None:
    env, graph = world
    url = env["WORKBOOKS_URL"]
    graph.sandbox.state.add_mailbox("cara@contoso.example")
    path = _csv(
        tmp_path / "users.csv",
        [
            f'{UPN},{url},env:WB_KEY_ANN,,,"{{""email_policy"": ""auto""}}"',  # line 2
            f'bob@contoso.example,{url},env:WB_KEY_ANN,,,"{{""colour"": ""red""}}"',  # 3
            f"cara@contoso.example,{url},env:WB_KEY_NOT_SET,,,",  # 4: its key cannot be read
            f"{UPN},{url},env:WB_KEY_ANN,,,",  # 5: listed twice
            f"not-an-address,{url},env:WB_KEY_ANN,,,",  # 6
            f"dan@contoso.example,{url},a-raw-api-key-123,,,",  # 7
        ],
    )
    code, out = await sync_cli(
        env, "mailboxes", "import", path, "--no-subscribe", "--concurrency", "3"
    )
    assert code == 1, out
    rows = _lines(out)
    assert sorted(rows) == [2, 3, 4, 5, 6, 7]
    assert "added" in rows[2] and UPN in rows[2]
    assert "refused" in rows[3] and "unknown policy key(s) colour" in rows[3]
    assert "refused" in rows[4] and "secrets.api_key" in rows[4]
    assert "refused" in rows[5] and "listed twice (first on line 2)" in rows[5]
    assert "refused" in rows[6] and "email address" in rows[6]
    assert "refused" in rows[7] and "a-raw-api-key-123" not in out
    assert "6 row(s): 1 added, 0 unchanged, 5 refused" in out

    code, out = await sync_cli(env, "mailboxes", "list")
    assert UPN in out and "cara@" not in out and "bob@" not in out

    # Again, with --force: Ann is unchanged, Cara registered despite her key (and said so).
    again = _csv(
        tmp_path / "again.csv",
        [
            f'{UPN},{url},env:WB_KEY_ANN,,,"{{""email_policy"": ""auto""}}"',
            f"cara@contoso.example,{url},env:WB_KEY_NOT_SET,,,",
        ],
    )
    code, out = await sync_cli(
        env, "mailboxes", "import", again, "--no-subscribe", "--force", "--json"
    )
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    outcomes = {r["mailbox"]: r for r in report["rows"]}
    assert outcomes[UPN]["outcome"] == "unchanged"
    assert outcomes["cara@contoso.example"]["outcome"] == "added"
    assert (
        "registered despite secrets.api_key (--force)" in outcomes["cara@contoso.example"]["notes"]
    )
    assert report["counts"] == {"added": 1, "unchanged": 1, "refused": 0}

    code, out = await sync_cli(env, "mailboxes", "import", str(tmp_path / "missing.csv"))
    assert code == 2 and "missing.csv" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("mailbox,url\nann@contoso.example,x\n")
    code, out = await sync_cli(env, "mailboxes", "import", str(bad))
    assert code == 2 and "unknown column(s) url" in out and "missing column(s)" in out


@pytest.mark.slow
async def test_show_and_update_merge_and_validate_the_policy(
    world: tuple[dict[str, str], Any], tmp_path: Path
) -> None:
    env, _ = world
    path = _csv(
        tmp_path / "ann.csv",
        [f'{UPN},{env["WORKBOOKS_URL"]},env:WB_KEY_ANN,,,"{{""email_policy"": ""auto""}}"'],
    )
    code, out = await sync_cli(env, "mailboxes", "import", path, "--no-subscribe")
    assert code == 0, out

    code, out = await sync_cli(
        env, "mailboxes", "update", UPN, "--policy", '{"blocklist": ["Spam.Example"]}'
    )
    assert code == 0, out
    assert "updated ann@contoso.example: blocklist" in out and '["spam.example"]' in out

    for bad, expected in (
        ('{"colour": "red"}', "unknown policy key(s) colour"),
        (
            '{"people_filters": [{"field": "name", "op": "today"}]}',
            "unknown filter operator 'today'",
        ),
        ('{"mass_change_share": 5}', "mass_change_share"),
        ("{not json", "not JSON"),
    ):
        code, out = await sync_cli(env, "mailboxes", "update", UPN, "--policy", bad)
        assert code == 2 and expected in out, out

    code, out = await sync_cli(env, "mailboxes", "show", UPN, "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["policy"]["email_policy"] == "auto"  # kept by the merge
    assert shown["policy"]["blocklist"] == ["spam.example"]
    assert shown["policy"]["people_filters"] == []  # the refused changes left nothing
    assert shown["registration"]["api_key_ref"] == "env:WB_KEY_ANN"
    assert shown["failing"] is False and shown["doctor"]["status"] in ("ok", "warn")

    code, out = await sync_cli(env, "mailboxes", "show", UPN)
    assert code == 0 and '"email_policy": "auto"' in out and "doctor" in out
    code, out = await sync_cli(env, "mailboxes", "show", "nobody@contoso.example")
    assert code == 1 and "not registered" in out
