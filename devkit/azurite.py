"""Start and stop the Azurite storage emulator (from the project's own node_modules).

Azurite is launched directly (``node_modules/.bin/azurite``, not ``npx``) so there is exactly one
process to stop.  Ports are chosen by Azurite itself (``--*Port 0``) and read back from its log,
which avoids races between parallel runs on one machine.

Data lives in memory unless a location is given: tests and benchmarks always start from nothing,
while ``make serve`` keeps its registry, cursors and queues in ``.azurite/`` (git-ignored) across
restarts.

Command line::

    python -m devkit.azurite run [--location DIR] -- <command ...>   # start, export env, run, stop
    python -m devkit.azurite start [--location DIR]                  # foreground until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "devstoreaccount1"
# Azurite's published development key (Azure/Azurite README); it protects nothing.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_LISTEN = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at (\S+)")
_CLOSED = re.compile(r"Azurite (Blob|Queue|Table) service successfully closed")
# Set once Azurite reports every service closed (its data written) or its output ends, by pid.
_closed: dict[int, threading.Event] = {}


class AzuriteError(RuntimeError):
    """Azurite could not be found or did not start."""


@dataclass(frozen=True)
class Azurite:
    blob_url: str
    queue_url: str
    table_url: str
    pid: int

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_url}/{ACCOUNT};"
            f"QueueEndpoint={self.queue_url}/{ACCOUNT};"
            f"TableEndpoint={self.table_url}/{ACCOUNT};"
        )


def azurite_binary() -> Path:
    path = ROOT / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise AzuriteError(
            f"Azurite not found at {path}. Run 'npm ci' in {ROOT} (the Makefile does this)."
        )
    return path


def command(location: Path | None = None, ports: tuple[int, int, int] = (0, 0, 0)) -> list[str]:
    """Azurite's argv: in memory, or keeping its data in ``location``; ``ports`` are the blob,
    queue and table ports (0: Azurite picks free ones)."""
    blob, queue, table = (str(port) for port in ports)
    storage = ["--location", str(location)] if location is not None else ["--inMemoryPersistence"]
    node = shutil.which("node")
    if node is None:
        raise AzuriteError("Node.js ('node') is not on PATH; Azurite needs it.")
    return [
        node,
        # Azurite's queue GC, in one pass (devkit/azurite_gc.js says why).
        "--require",
        str(Path(__file__).with_name("azurite_gc.js")),
        str(azurite_binary().resolve()),
        *storage,
        "--skipApiVersionCheck",
        "--disableProductStyleUrl",
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        blob,
        "--queueHost",
        "127.0.0.1",
        "--queuePort",
        queue,
        "--tableHost",
        "127.0.0.1",
        "--tablePort",
        table,
    ]


def start(
    timeout: float = 30.0,
    *,
    location: Path | None = None,
    ports: tuple[int, int, int] = (0, 0, 0),
) -> tuple[Azurite, subprocess.Popen[str]]:
    """Start Azurite; with ``location`` its data is read from and written to that directory
    (created if missing), so a later start there finds it again."""
    if location is not None:
        location.mkdir(parents=True, exist_ok=True)
        workdir = str(location)
    else:
        workdir = tempfile.mkdtemp(prefix="azurite-")
    cmd = command(location, ports)
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        cmd,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    urls: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while len(urls) < 3:
        if time.monotonic() > deadline or proc.poll() is not None:
            stop(proc)
            raise AzuriteError(f"Azurite did not start (found {sorted(urls)})")
        line = proc.stdout.readline()
        if line.startswith("devkit: "):  # the GC preload could not be applied: say so
            print(line.rstrip(), file=sys.stderr)
        match = _LISTEN.search(line)
        if match:
            urls[match.group(1).lower()] = match.group(2).rstrip("/")
    # Keep draining Azurite's output so its pipe never fills up and blocks it.
    _drain(proc)
    return Azurite(urls["blob"], urls["queue"], urls["table"], proc.pid), proc


def _drain(proc: subprocess.Popen[str]) -> None:
    closed = _closed[proc.pid] = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        services: set[str] = set()
        for line in proc.stdout:
            match = _CLOSED.search(line)
            if match:
                services.add(match.group(1))
                if len(services) == 3:
                    closed.set()
        closed.set()

    threading.Thread(target=pump, daemon=True, name="azurite-log").start()


def stop(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL.  After serving requests Azurite closes its services on SIGTERM
    (writing its data when it has a location) but its process lingers, so once it has said
    every service is closed it is not waited for any longer."""
    closed = _closed.pop(proc.pid, None)
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if closed is not None and closed.wait(0.05):
            break
        if closed is None:
            time.sleep(0.05)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def running(location: Path | None = None) -> Iterator[Azurite]:
    azurite, proc = start(location=location)
    try:
        yield azurite
    finally:
        stop(proc)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m devkit azurite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=("run", "start"))
    p.add_argument(
        "--location",
        type=Path,
        default=None,
        help="keep Azurite's data in this directory (default: in memory, gone at exit)",
    )
    return p


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "start"}:
        print(__doc__, file=sys.stderr)
        return 2
    # Options go between the action and "--"; "run" without "--" takes everything as the command.
    if "--" in argv:
        split = argv.index("--")
        head, cmd = argv[:split], argv[split + 1 :]
    elif argv[0] == "run":
        head, cmd = argv[:1], argv[1:]
    else:
        head, cmd = argv, []
    args = _parser().parse_args(head)
    with running(args.location) as azurite:
        env = dict(os.environ)
        env["AzureWebJobsStorage"] = azurite.connection_string
        env["AZURITE_CONNECTION_STRING"] = azurite.connection_string
        if argv[0] == "start":
            print(
                f"Azurite running (pid {azurite.pid}).\nAzureWebJobsStorage={azurite.connection_string}"
            )
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
            return 0
        if not cmd:
            print("nothing to run", file=sys.stderr)
            return 2
        exe = shutil.which(cmd[0]) or cmd[0]
        return subprocess.call([exe, *cmd[1:]], env=env)  # noqa: S603


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
