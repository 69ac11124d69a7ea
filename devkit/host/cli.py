"""``python -m devkit serve``: run function_app.py on the local host until Ctrl-C / SIGTERM.

    python -m devkit serve [--port 7071] [--no-timers] [--no-queues] [--no-http]
                         [--azurite [--azurite-location DIR]]
                         [--app function_app] [--host-json host.json]

Settings are validated first (exit code 2 with the message on a bad configuration), like
every other ``python -m sync`` command.  ``local.settings.json`` ``Values`` are read into the
environment when present (without overriding variables that are already set), as Core Tools
does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from sync.settings import SettingsError, get_settings

log = logging.getLogger("devkit.host")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m devkit serve",
        description="Run function_app.py on the local stand-in for the Azure Functions host.",
    )
    p.add_argument("--port", type=int, default=7071, help="HTTP port (0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--no-timers", action="store_true", help="do not fire timer triggers")
    p.add_argument("--no-queues", action="store_true", help="do not poll queue triggers")
    p.add_argument(
        "--no-http",
        action="store_true",
        help="serve no HTTP routes (a worker-only instance: several can run side by side)",
    )
    p.add_argument("--app", default="function_app", help="module name or path of the app")
    p.add_argument("--host-json", default=None, help="host.json path (default ./host.json)")
    p.add_argument(
        "--azurite",
        action="store_true",
        help="start Azurite for the session when AzureWebJobsStorage is not set",
    )
    p.add_argument(
        "--azurite-location",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --azurite: keep Azurite's data in DIR across restarts (default: in memory; "
        "'make serve' uses .azurite/)",
    )
    return p


def load_local_settings(path: Path = Path("local.settings.json")) -> list[str]:
    """Core Tools puts local.settings.json ``Values`` into the environment; so do we."""
    if not path.exists():
        return []
    try:
        values = json.loads(path.read_text()).get("Values") or {}
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise SettingsError(f"cannot read {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise SettingsError(f"cannot read {path}: 'Values' must be an object of settings")
    added = []
    for key, value in values.items():
        if key not in os.environ and value is not None:
            os.environ[key] = str(value)
            added.append(key)
    return added


@contextlib.contextmanager
def _maybe_azurite(wanted: bool, location: Path | None = None) -> Iterator[None]:
    if not wanted or os.environ.get("AzureWebJobsStorage"):
        yield
        return
    from devkit import azurite

    with azurite.running(location) as az:
        os.environ["AzureWebJobsStorage"] = az.connection_string
        where = f"data in {location}" if location is not None else "data in memory"
        sys.stdout.write(f"Azurite started (pid {az.pid}, {where}).\n")
        try:
            yield
        finally:
            os.environ.pop("AzureWebJobsStorage", None)


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "serve":
        args_list = args_list[1:]
    if args_list and args_list[0] == "--":
        args_list = args_list[1:]
    args = _parser().parse_args(args_list)
    try:
        load_local_settings()
    except SettingsError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    with _maybe_azurite(args.azurite, args.azurite_location):
        get_settings.cache_clear()
        try:
            settings = get_settings()
        except SettingsError as exc:
            sys.stderr.write(f"{exc}\n")
            return 2
        logging.basicConfig(
            level=settings.app.log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        for noisy in ("azure", "aiohttp.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        try:
            return asyncio.run(_serve(args))
        except KeyboardInterrupt:
            return 0


async def _serve(args: argparse.Namespace) -> int:
    from devkit.host import cpu_ledger
    from devkit.host.localhost import LocalHost

    ledger_path = os.environ.get(cpu_ledger.ENV)
    if ledger_path:  # benchmarks: the CPU of the functions apart from the host's
        cpu_ledger.install()

    try:
        host = LocalHost(
            args.app,
            host_json=args.host_json,
            port=args.port,
            bind=args.host,
            timers=not args.no_timers,
            queues=not args.no_queues,
            http=not args.no_http,
        )
        await host.start()
    except Exception as exc:  # import errors, bad host.json, missing settings, port in use
        log.debug("start-up failed", exc_info=True)
        sys.stderr.write(f"local host did not start: {type(exc).__name__}: {exc}\n")
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if sys.platform != "win32":  # the Windows event loop has no signal handlers
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, stop.set)
    lines = "\n".join(f"  {line}" for line in host.describe())
    skipped = ""
    if host.indexed is not None and host.indexed.skipped:
        skipped = "\nSkipped (not supported locally):\n" + "\n".join(
            f"  {name}: {why}" for name, why in host.indexed.skipped.items()
        )
    where = host.base_url if host.http_enabled else f"pid {os.getpid()} (no HTTP)"
    sys.stdout.write(f"Local Functions host on {where}\n\nFunctions:\n{lines}{skipped}\n\n")
    if host.dev_sign_in is not None:
        sys.stdout.write(
            f"Sync Center console: {host.base_url}/api/console "
            "(development sign-in; in Azure, Entra ID)\n\n"
        )
    sys.stdout.write("Press Ctrl+C to stop.\n")
    sys.stdout.flush()
    ledger = (
        asyncio.create_task(cpu_ledger.keep_writing(Path(ledger_path))) if ledger_path else None
    )
    try:
        await stop.wait()
    finally:
        if ledger is not None:
            ledger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ledger
        await host.stop()
        # This process is ending: close the functions' services too (their Workbooks and
        # Graph sessions), rather than leave them to the interpreter's exit, which warns.
        from sync.runtime import reset_services

        with contextlib.suppress(Exception):
            await reset_services()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
