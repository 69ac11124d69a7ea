"""Azurite's data on disk for ``make serve`` (``--location``), in memory for everything else."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from devkit import azurite
from devkit.host.cli import _parser

ROOT = Path(__file__).resolve().parents[1]

WRITE = """
import asyncio, os
from azure.data.tables.aio import TableServiceClient

async def main():
    conn = os.environ["AZURITE_CONNECTION_STRING"]
    async with TableServiceClient.from_connection_string(conn) as svc:
        table = await svc.create_table_if_not_exists("kept")
        await table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "mailbox": "ann"})

asyncio.run(main())
"""

READ = """
import asyncio, os
from azure.data.tables.aio import TableServiceClient

async def main():
    conn = os.environ["AZURITE_CONNECTION_STRING"]
    async with TableServiceClient.from_connection_string(conn) as svc:
        row = await svc.get_table_client("kept").get_entity("p", "r")
        raise SystemExit(0 if row["mailbox"] == "ann" else 1)

asyncio.run(main())
"""


def test_data_kept_in_a_location_survives_a_restart(tmp_path: Path) -> None:
    location = tmp_path / ".azurite"
    python = sys.executable
    assert azurite.main(["run", "--location", str(location), "--", python, "-c", WRITE]) == 0
    assert any(location.glob("__azurite_db_table__*"))
    # A second Azurite process (on other ports) finds the row the first one wrote.
    assert azurite.main(["run", "--location", str(location), "--", python, "-c", READ]) == 0


def test_without_a_location_azurite_keeps_nothing(tmp_path: Path) -> None:
    assert "--inMemoryPersistence" in azurite.command()
    assert "--location" not in azurite.command()
    on_disk = azurite.command(tmp_path, ports=(1, 2, 3))
    assert on_disk[on_disk.index("--location") + 1] == str(tmp_path)
    assert "--inMemoryPersistence" not in on_disk
    assert [on_disk[on_disk.index(f"--{kind}Port") + 1] for kind in ("blob", "queue", "table")] == [
        "1",
        "2",
        "3",
    ]


def test_make_serve_keeps_azurite_on_disk_and_git_ignores_it() -> None:
    makefile = (ROOT / "Makefile").read_text()
    serve = re.search(r"^serve: .*\n\t(.+)$", makefile, re.MULTILINE)
    assert serve, "the Makefile has a serve target"
    args = serve.group(1).split()[serve.group(1).split().index("serve") + 1 :]
    parsed = _parser().parse_args([a for a in args if not a.startswith("$(")])
    assert parsed.azurite and parsed.azurite_location == Path(".azurite")
    assert ".azurite/" in (ROOT / ".gitignore").read_text().splitlines()
