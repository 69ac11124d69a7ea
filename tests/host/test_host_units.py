"""The local host's pure parts: route templates, host.json, schedules, %SETTING% resolution."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devkit.host.appsettings import AppSettingError, resolve
from devkit.host.cli import load_local_settings
from devkit.host.config import HostConfig, HostConfigError, parse_timespan
from devkit.host.routes import RouteTemplateError, convert_route
from devkit.host.schedule import Schedule, ScheduleError
from devkit.host.storage import decode_message, encode_message
from sync.settings import SettingsError


def _matches(path_template: str, path: str) -> dict[str, str] | None:
    """Match like aiohttp does: each {name:regex} becomes a named group."""
    parts = re.split(r"(\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\})", path_template)
    pattern = ""
    for part in parts:
        if part.startswith("{"):
            name, _, regex = part[1:-1].partition(":")
            pattern += f"(?P<{name}>{regex or '[^{}/]+'})"
        else:
            pattern += re.escape(part)
    m = re.fullmatch(pattern, path)
    return m.groupdict() if m else None


def test_plain_and_typed_parameters() -> None:
    route = convert_route("items/{id:int}/{name}")
    assert [v.path for v in route.variants] == ["/api/items/{id:-?\\d+}/{name:[^{}/]+}"]
    assert _matches(route.variants[0].path, "/api/items/42/bob") == {"id": "42", "name": "bob"}
    assert _matches(route.variants[0].path, "/api/items/abc/bob") is None


def test_route_prefix_from_host_json() -> None:
    assert convert_route("ping", "").variants[0].path == "/ping"
    assert convert_route("/ping/", "v1/").variants[0].path == "/v1/ping"


def test_optional_default_and_catch_all_expand_to_several_paths() -> None:
    opt = convert_route("greet/{name?}")
    assert [v.path for v in opt.variants] == ["/api/greet/{name:[^{}/]+}", "/api/greet"]
    assert opt.variants[1].absent == ("name",)
    dflt = convert_route("page/{n:int=1}")
    assert dflt.variants[1].path == "/api/page" and dflt.variants[1].defaults == {"n": "1"}
    rest = convert_route("files/{*path}")
    assert [v.path for v in rest.variants] == ["/api/files/{path:.*}", "/api/files"]
    assert _matches(rest.variants[0].path, "/api/files/a/b/c") == {"path": "a/b/c"}


def test_value_constraints_are_checked_after_matching() -> None:
    route = convert_route("u/{code:minlength(3):maxlength(5)}/{n:range(1,10)}/{r:regex(^a\\d$)}")
    assert route.check({"code": "abc", "n": "10", "r": "a1"})
    assert not route.check({"code": "ab", "n": "3", "r": "a1"})
    assert not route.check({"code": "abc", "n": "11", "r": "a1"})
    assert not route.check({"code": "abc", "n": "3", "r": "b1"})
    guid = convert_route("g/{id:guid}").variants[0].path
    assert _matches(guid, "/api/g/0f8fad5b-d9cb-469f-a165-70867728950e")
    assert _matches(guid, "/api/g/nope") is None
    assert _matches(convert_route("b/{flag:bool}").variants[0].path, "/api/b/True")


def test_precedence_literal_before_parameter_before_catch_all() -> None:
    routes = [convert_route(t) for t in ["sync/{mailbox}", "{*all}", "sync/jobs", "sync/{id:int}"]]
    ordered = [r.template for r in sorted(routes, key=lambda r: r.precedence)]
    assert ordered == ["sync/jobs", "sync/{id:int}", "sync/{mailbox}", "{*all}"]


@pytest.mark.parametrize(
    "template", ["a/{*rest}/b", "a/{x?}/b", "a/{id}/{ID}", "a/{bad", "a/{x:nosuch(1)}", "a//b"]
)
def test_bad_templates_are_rejected(template: str) -> None:
    with pytest.raises(RouteTemplateError):
        convert_route(template)


def test_host_json_values_defaults_and_overrides() -> None:
    cfg = HostConfig.load("host.json", environ={})
    assert cfg.route_prefix == "api"
    assert cfg.queues.max_dequeue_count == 5 and cfg.queues.visibility_timeout == 30
    assert cfg.queues.batch_size == 16 and cfg.queues.max_concurrency == 24
    assert cfg.function_timeout == 1800
    bare = HostConfig.load({}, environ={})
    assert bare.queues.batch_size == 16 and bare.queues.new_batch_threshold == 8
    assert bare.queues.max_polling_interval == 60 and bare.queues.max_dequeue_count == 5
    env = {"AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "2"}
    assert HostConfig.load("host.json", environ=env).queues.max_dequeue_count == 2
    with pytest.raises(HostConfigError):
        HostConfig.load({"extensions": {"queues": {"batchSize": 64}}}, environ={})


def test_timespans() -> None:
    assert parse_timespan("00:00:01") == 1
    assert parse_timespan("1.02:00:00.5") == 93600.5
    assert parse_timespan(2000) == 2  # milliseconds, old schema
    with pytest.raises(HostConfigError):
        parse_timespan("soon")


def test_ncrontab_seconds_come_first() -> None:
    start = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
    every_five_minutes = Schedule.parse("0 */5 * * * *")
    assert every_five_minutes.next_after(start) == datetime(2026, 1, 1, 0, 5, 0, tzinfo=UTC)
    assert Schedule.parse("*/2 * * * * *").next_after(start) == datetime(
        2026, 1, 1, 0, 0, 2, tzinfo=UTC
    )
    assert Schedule.parse("00:10:00").next_after(start) == datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    with pytest.raises(ScheduleError):
        Schedule.parse("*/5 * * * *")  # classic 5-field cron is not NCRONTAB


def test_setting_expressions_fall_back_to_app_settings_defaults() -> None:
    assert resolve("%SAMPLE_X%", {"SAMPLE_X": "1 2 3 4 5 6"}) == "1 2 3 4 5 6"
    assert resolve("%SYNC_PUSH_SCHEDULE%", {}) == "20 * * * * *"  # the push tick
    assert resolve("%SYNC_JOBS_QUEUE%", {}) == "sync-jobs"
    assert resolve("%SYNC_JOBS_QUEUE%", {"SYNC_JOBS_QUEUE": "other"}) == "other"
    assert resolve("plain", {}) == "plain"
    with pytest.raises(AppSettingError):
        resolve("%NOT_A_SETTING%", {})


def test_base64_wire_format() -> None:
    assert encode_message("héllo".encode(), "base64") == "aMOpbGxv"
    assert decode_message("aMOp\nbGxv", "base64") == "héllo".encode()
    assert decode_message("plain text", "none") == b"plain text"
    with pytest.raises(ValueError, match="base64"):
        decode_message("not base64!", "base64")


def test_unreadable_host_json_or_local_settings_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "host.json").write_text("{not json")
    with pytest.raises(HostConfigError, match=r"cannot read host\.json"):
        HostConfig.load(environ={})  # ./host.json, as `python -m devkit serve` reads it
    local = tmp_path / "local.settings.json"
    local.write_text('{"Values": ["AzureWebJobsStorage=UseDevelopmentStorage=true"]}')
    with pytest.raises(SettingsError, match="'Values' must be an object"):
        load_local_settings(local)
