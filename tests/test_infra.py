"""The infrastructure templates stay in step with the code (devkit/checks/infra.py).

The first tests check the real repository. The rest copy ``infra/`` to a temporary directory,
break one thing, and show that the check reports exactly that thing, so a passing suite means
the check still has teeth.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devkit.checks.infra import (
    BicepSyntaxError,
    Problem,
    Template,
    check_infra,
    main,
    parse_bicep,
)
from sync.settings import settings_catalogue

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"


def _template_settings() -> list[str]:
    template = Template(MAIN, parse_bicep(MAIN), "infra/main.bicep", MAIN.read_text())
    return sorted(template.app_settings())


def _messages(problems: list[Problem]) -> str:
    return "\n".join(str(p) for p in problems)


Edit = Callable[[str], str]


@functools.cache
def _baseline() -> frozenset[str]:
    """Problems of the real repository (normally none; test_code_and_infra_agree reports them)."""
    return frozenset(p.message for p in check_infra(ROOT))


@pytest.fixture
def infra_copy(tmp_path: Path) -> Callable[..., list[Problem]]:
    """Copy infra/ into tmp_path, apply edits to main.bicep (or another file), run the check.

    Returns only the problems the edit introduced, so these tests show what each breakage is
    reported as even while the real repository has unrelated drift.
    """
    shutil.copytree(INFRA, tmp_path / "infra")

    def run(
        edit: Edit | None = None,
        *,
        file: str = "main.bicep",
        catalogue: list[dict[str, Any]] | None = None,
        repo_root: Path = ROOT,
    ) -> list[Problem]:
        if edit is not None:
            path = tmp_path / "infra" / file
            before = path.read_text() if path.exists() else ""
            after = edit(before)
            assert after != before, "the edit did not change anything"
            path.write_text(after)
        problems = check_infra(repo_root, infra_dir=tmp_path / "infra", catalogue=catalogue)
        return [p for p in problems if p.message not in _baseline()]

    return run


def _drop_line(pattern: str) -> Edit:
    regex = re.compile(pattern)

    def edit(text: str) -> str:
        lines = text.splitlines(keepends=True)
        kept = [line for line in lines if not regex.search(line)]
        assert len(kept) == len(lines) - 1, f"{pattern!r} should match exactly one line"
        return "".join(kept)

    return edit


def _replace(old: str, new: str) -> Edit:
    def edit(text: str) -> str:
        assert old in text, f"{old!r} not found"
        return text.replace(old, new, 1)

    return edit


def _re_sub(pattern: str, replacement: str) -> Edit:
    def edit(text: str) -> str:
        new, count = re.subn(pattern, replacement, text, count=1)
        assert count == 1, f"{pattern!r} not found"
        return new

    return edit


# ---------------------------------------------------------------------------------------------
# The real repository
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", sorted(INFRA.rglob("*.bicep")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_bicep_file_parses(path: Path) -> None:
    parsed = parse_bicep(path)
    assert parsed.get("resources") or parsed.get("modules")


def test_code_and_infra_agree() -> None:
    problems = check_infra(ROOT)
    assert problems == [], "code and infra/ disagree:\n" + _messages(problems)


def test_every_setting_without_a_default_is_in_the_template() -> None:
    """The rule in its plainest form, straight from the catalogue the app uses."""
    in_template = set(_template_settings())
    allowed_out = {"AzureWebJobsStorage"}  # replaced by the identity-based __ settings
    for row in settings_catalogue():
        if row["default"] in (None, "") and row["env"][0] not in allowed_out:
            assert set(row["env"]) & in_template, f"{row['env'][0]} has no default"


def test_timer_schedules_and_azure_wiring_are_set() -> None:
    settings = set(_template_settings())
    for name in (
        "SYNC_PUSH_SCHEDULE",
        "SYNC_RECONCILE_SCHEDULE",
        "SYNC_RENEW_SCHEDULE",
        "SYNC_TODO_POLL_SCHEDULE",
        "SYNC_PUBLIC_BASE_URL",
        "SYNC_SECRETS_PROVIDER",
        "SYNC_KEY_VAULT_URL",
        "GRAPH_CLIENT_SECRET",
        "AzureWebJobsStorage__tableServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
        "AzureWebJobsStorage__clientId",
    ):
        assert name in settings
    text = MAIN.read_text()
    assert "SYNC_SECRETS_PROVIDER: 'keyvault'" in text
    # A Key Vault reference, or empty when the federated credential replaces the secret.
    assert "GRAPH_CLIENT_SECRET: graphFederatedCredential ? '' : '@Microsoft.KeyVault(" in text
    assert "keyVaultReferenceIdentity: identity.id" in text


def test_process_environment_does_not_leak_into_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SYNC_PUSH_SCHEDULE", "not a schedule")
    monkeypatch.setenv("GRAPH_MAX_CONCURRENCY", "99")
    assert check_infra(ROOT) == []


def test_command_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([str(ROOT)]) == 0
    assert "consistent" in capsys.readouterr().out
    (tmp_path / "infra").mkdir()
    assert main([str(tmp_path)]) == 1
    assert "main.bicep: missing" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# The check fails when the templates fall behind the code
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _template_settings())
def test_removing_a_setting_from_the_template_is_reported(
    infra_copy: Callable[..., list[Problem]], name: str
) -> None:
    problems = infra_copy(_drop_line(rf"^\s*{re.escape(name)}\s*:"))
    assert problems, f"removing {name} went unnoticed"
    assert any(name in p.message for p in problems), _messages(problems)


def test_removing_a_setting_without_default_says_so(
    infra_copy: Callable[..., list[Problem]],
) -> None:
    problems = infra_copy(_drop_line(r"^\s*GRAPH_CLIENT_ID\s*:"))
    assert [p.message for p in problems if "GRAPH_CLIENT_ID" in p.message] == [
        "GRAPH_CLIENT_ID (GraphSettings.client_id, no default) is read by the app but not set "
        "in the templates' app settings nor listed in infra/optional-settings.txt"
    ]


def test_removing_a_timer_schedule_names_the_trigger(
    infra_copy: Callable[..., list[Problem]],
) -> None:
    problems = infra_copy(_drop_line(r"^\s*SYNC_RENEW_SCHEDULE\s*:"))
    text = _messages(problems)
    assert "SYNC_RENEW_SCHEDULE (AppSettings.renew_schedule" in text
    if (ROOT / "sync" / "blueprints" / "timers.py").exists():
        assert "%SYNC_RENEW_SCHEDULE% is resolved by the Functions host" in text


def test_a_new_setting_in_the_code_must_reach_the_templates(
    infra_copy: Callable[..., list[Problem]],
) -> None:
    base = settings_catalogue()
    no_default = {
        "group": "AppSettings",
        "field": "brand_new",
        "env": ["SYNC_BRAND_NEW"],
        "default": None,
        "required": False,
        "secret": False,
        "description": "",
    }
    with_default = {**no_default, "field": "tuned", "env": ["SYNC_TUNED"], "default": 7}
    problems = infra_copy(catalogue=[*base, no_default, with_default])
    text = _messages(problems)
    assert "SYNC_BRAND_NEW (AppSettings.brand_new, no default) is read by the app" in text
    assert "SYNC_TUNED (AppSettings.tuned, default 7) is read by the app" in text
    assert len(problems) == 2, text

    # Listing the defaulted one with a reason is enough; the one without a default is not.
    def allow(text: str) -> str:
        return text + "SYNC_TUNED: the default suits every deployment\n"

    problems = infra_copy(allow, file="optional-settings.txt", catalogue=[*base, with_default])
    assert problems == [], _messages(problems)

    def allow_no_default(text: str) -> str:
        return text + "SYNC_BRAND_NEW: we will set it later by hand\n"

    problems = infra_copy(
        allow_no_default, file="optional-settings.txt", catalogue=[*base, no_default]
    )
    assert any("SYNC_BRAND_NEW has no default" in p.message for p in problems), _messages(problems)


def test_optional_list_entries_are_checked(infra_copy: Callable[..., list[Problem]]) -> None:
    def edit(text: str) -> str:
        return text + "SYNC_NO_SUCH_SETTING: left over from an old version\nSYNC_LOG_LEVEL: x\n"

    text = _messages(infra_copy(edit, file="optional-settings.txt"))
    assert "SYNC_NO_SUCH_SETTING is not a setting the app reads" in text
    assert "SYNC_LOG_LEVEL: give a reason" in text
    assert "SYNC_LOG_LEVEL is set in the templates; remove it from" in text


def test_replacement_settings_must_exist(infra_copy: Callable[..., list[Problem]]) -> None:
    problems = infra_copy(_drop_line(r"^\s*AzureWebJobsStorage__queueServiceUri\s*:"))
    text = _messages(problems)
    assert "AzureWebJobsStorage is replaced by AzureWebJobsStorage__queueServiceUri" in text


def test_misspelt_setting_is_reported(infra_copy: Callable[..., list[Problem]]) -> None:
    problems = infra_copy(_replace("SYNC_LOG_LEVEL:", "SYNC_LOGLEVEL:"))
    text = _messages(problems)
    assert "app setting SYNC_LOGLEVEL is not read by the app" in text
    assert "SYNC_LOG_LEVEL (AppSettings.log_level" in text
    # and the line number points at the setting itself
    line = next(p for p in problems if "SYNC_LOGLEVEL" in p.message).where
    number = int(line.rsplit(":", 1)[1])
    copy = (MAIN.read_text().splitlines())[number - 1]
    assert "SYNC_LOG_LEVEL:" in copy


def test_settings_flex_rejects_are_reported(infra_copy: Callable[..., list[Problem]]) -> None:
    problems = infra_copy(
        _replace(
            "    SYNC_LOG_LEVEL: logLevel\n",
            "    SYNC_LOG_LEVEL: logLevel\n    FUNCTIONS_WORKER_RUNTIME: 'python'\n",
        )
    )
    assert any("FUNCTIONS_WORKER_RUNTIME must not be set" in p.message for p in problems), (
        _messages(problems)
    )


def test_secret_values_are_reported(infra_copy: Callable[..., list[Problem]]) -> None:
    problems = infra_copy(
        _re_sub(
            r"GRAPH_CLIENT_SECRET: graphFederatedCredential \? '' : '@Microsoft\.KeyVault\([^']*'",
            "GRAPH_CLIENT_SECRET: 'hunter2'",
        )
    )
    assert any(
        "GRAPH_CLIENT_SECRET is a secret: set it as a Key Vault reference" in p.message
        for p in problems
    ), _messages(problems)


def test_account_keys_are_reported(infra_copy: Callable[..., list[Problem]]) -> None:
    problems = infra_copy(
        _replace(
            "output AZURE_LOCATION string = location\n",
            "output AZURE_LOCATION string = location\n"
            "output KEY string = storage.listKeys().keys[0].value\n",
        )
    )
    assert any("looks like a key or secret" in p.message for p in problems), _messages(problems)


def test_invalid_schedule_default_is_reported(infra_copy: Callable[..., list[Problem]]) -> None:
    # A classic five-field cron: the host would reject it; the app's validator does too.
    problems = infra_copy(
        _replace(
            "param reconcileSchedule string = '0 * * * * *'",
            "param reconcileSchedule string = '*/30 * * * *'",
        )
    )
    assert any(
        "SYNC_RECONCILE_SCHEDULE: the template's value is invalid" in p.message for p in problems
    ), _messages(problems)


def test_missing_table_is_reported(infra_copy: Callable[..., list[Problem]]) -> None:
    problems = infra_copy(_drop_line(r"^\s*'runs'\s*$"))
    assert [p.message for p in problems] == [
        "table syncruns (sync/state/tables.py TABLES 'runs') is not created by the templates"
    ]


def test_missing_poison_queue_is_reported(infra_copy: Callable[..., list[Problem]]) -> None:
    problems = infra_copy(
        _replace("name: '${jobsQueueName}-poison'", "name: '${jobsQueueName}-dead'")
    )
    assert [p.message for p in problems] == [
        "queue sync-jobs-poison (poison queue of sync-jobs) is not created by the templates"
    ]


def test_names_follow_the_template_parameters(infra_copy: Callable[..., list[Problem]]) -> None:
    """Tables and queues are compared after resolving the template's own values."""

    def edit(text: str) -> str:
        text = text.replace("param tablePrefix string = 'sync'", "param tablePrefix string = 'wb'")
        return text.replace(
            "param jobsQueueName string = 'sync-jobs'", "param jobsQueueName string = 'wb-jobs'"
        )

    assert infra_copy(edit) == []


def test_trigger_declarations_are_backed_by_the_templates(
    infra_copy: Callable[..., list[Problem]], tmp_path: Path
) -> None:
    (tmp_path / "function_app.py").write_text(
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n"
        "@app.timer_trigger(schedule='%SYNC_NIGHTLY_SCHEDULE%', arg_name='t')\n"
        "def nightly(t): ...\n"
        "@app.queue_trigger(arg_name='m', queue_name='%SYNC_JOBS_QUEUE%',\n"
        "                   connection='AzureWebJobsStorage')\n"
        "def worker(m): ...\n"
        "@app.queue_trigger(arg_name='m', queue_name='audit-events', connection='AuditStorage')\n"
        "def audit(m): ...\n"
    )
    # This repository has no host.json and none of the functions the alerts watch; those checks
    # have their own tests below, so only the trigger declarations are compared here.
    problems = [
        p
        for p in infra_copy(repo_root=tmp_path)
        if p.where != "host.json" and "the query names function" not in p.message
    ]
    assert sorted(p.message for p in problems) == [
        "%SYNC_NIGHTLY_SCHEDULE% is resolved by the Functions host from app settings, but the "
        "templates do not set it (the host fails to index the function)",
        "connection 'AuditStorage' needs app setting AuditStorage or AuditStorage__* in the "
        "templates",
        "queue audit-events (queue_name at function_app.py:8) is not created by the templates",
    ]
    assert {p.where for p in problems} >= {"function_app.py:3", "function_app.py:8"}


def test_role_assignments_are_least_privilege(infra_copy: Callable[..., list[Problem]]) -> None:
    # Swap Monitoring Metrics Publisher for Contributor.
    problems = infra_copy(
        _replace(
            "monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'",
            "monitoringMetricsPublisher: 'b24988ac-6180-42a0-ab88-20f7382dd24c'",
        )
    )
    text = _messages(problems)
    assert "metricsPublisher: Contributor is broader than the app needs" in text
    assert "the app identity is not granted Monitoring Metrics Publisher" in text


def test_runtime_must_be_python_311(infra_copy: Callable[..., list[Problem]]) -> None:
    problems = infra_copy(_replace("version: '3.11'", "version: '3.12'"))
    assert any("functionAppConfig.runtime must be python 3.11" in p.message for p in problems), (
        _messages(problems)
    )


def test_webhook_outputs_are_required(infra_copy: Callable[..., list[Problem]]) -> None:
    problems = infra_copy(_replace("/api/graph/lifecycle'", "/api/graph/lifecycle-v2'"))
    assert [p.message for p in problems] == [
        "output GRAPH_LIFECYCLE_URL must end with /api/graph/lifecycle"
    ]


def test_parameters_file_matches_the_template(infra_copy: Callable[..., list[Problem]]) -> None:
    def edit(text: str) -> str:
        doc = json.loads(text)
        del doc["parameters"]["graphClientId"]
        doc["parameters"]["graphClientID"] = {"value": "typo"}
        return json.dumps(doc, indent=2)

    problems = infra_copy(edit, file="main.parameters.json")
    assert sorted(p.message for p in problems) == [
        "parameter graphClientID does not exist in infra/main.bicep",
        "parameter graphClientId has no default and is not supplied here",
    ]


# ---------------------------------------------------------------------------------------------
# Syntax errors fail the check (pycep-parser is a syntax gate, not a compiler)
# ---------------------------------------------------------------------------------------------


def test_syntax_error_is_reported_with_its_line(
    infra_copy: Callable[..., list[Problem]], tmp_path: Path
) -> None:
    # Drop the closing brace of the jobs queue resource.
    def edit(text: str) -> str:
        return text.replace("  name: jobsQueueName\n}\n", "  name: jobsQueueName\n\n", 1)

    problems = infra_copy(edit)
    assert len(problems) == 1, _messages(problems)
    assert problems[0].message.startswith("Bicep syntax error")
    assert re.fullmatch(r"infra/main\.bicep:\d+", problems[0].where)
    with pytest.raises(BicepSyntaxError) as info:
        parse_bicep(tmp_path / "infra" / "main.bicep")
    assert info.value.line is not None


def test_syntax_error_in_any_bicep_file_is_reported(
    infra_copy: Callable[..., list[Problem]],
) -> None:
    def edit(_: str) -> str:
        return "param x string = 'unterminated\n"

    problems = infra_copy(edit, file="extra.bicep")
    assert [p.where for p in problems] == ["infra/extra.bicep:1"]
    assert problems[0].message.startswith("Bicep syntax error")


# ---------------------------------------------------------------------------------------------
# Limits Azure enforces, the azd parameters, host.json and the alerts
# ---------------------------------------------------------------------------------------------


def test_jobs_queue_parameter_leaves_room_for_the_poison_suffix(
    infra_copy: Callable[..., list[Problem]],
) -> None:
    problems = infra_copy(_replace("@maxLength(56)\n", "@maxLength(57)\n"))
    text = _messages(problems)
    assert (
        "jobsQueueName allows 57 characters; with '-poison' the poison queue's name would "
        "exceed Azure's 63"
    ) in text
    assert "jobsQueueName allows 57 characters but the app allows 56" in text


def test_app_and_template_agree_on_the_jobs_queue_limit() -> None:
    from sync.settings import MAX_JOBS_QUEUE_CHARS, AppSettings

    assert MAX_JOBS_QUEUE_CHARS == 56
    AppSettings(storage_connection="UseDevelopmentStorage=true", jobs_queue="q" * 56)
    with pytest.raises(ValueError, match="3-56 lowercase"):
        AppSettings(storage_connection="UseDevelopmentStorage=true", jobs_queue="q" * 57)


def test_instance_memory_allows_only_flex_sizes(infra_copy: Callable[..., list[Problem]]) -> None:
    problems = infra_copy(
        _replace("@allowed([\n  2048\n  4096\n])", "@allowed([\n  512\n  2048\n])")
    )
    assert [p.message for p in problems] == [
        "functionApp: instanceMemoryMB allows [512]; Flex Consumption accepts [2048, 4096]"
    ]


def test_principal_type_comes_from_azd(infra_copy: Callable[..., list[Problem]]) -> None:
    doc = json.loads((INFRA / "main.parameters.json").read_text())
    assert doc["parameters"]["principalType"]["value"] == "${AZURE_PRINCIPAL_TYPE=User}"

    def drop(text: str) -> str:
        data = json.loads(text)
        del data["parameters"]["principalType"]
        return json.dumps(data)

    assert [p.message for p in infra_copy(drop, file="main.parameters.json")] == [
        "principalId is supplied but principalType is not (AZURE_PRINCIPAL_TYPE)"
    ]


def test_azd_placeholder_defaults_must_be_allowed_values(
    infra_copy: Callable[..., list[Problem]],
) -> None:
    def bad_default(text: str) -> str:
        return text.replace("${AZURE_PRINCIPAL_TYPE=User}", "${AZURE_PRINCIPAL_TYPE=Robot}")

    problems = infra_copy(bad_default, file="main.parameters.json")
    assert [p.message for p in problems] == [
        "parameter principalType: placeholder default 'Robot' is not one of "
        "['User', 'Group', 'ServicePrincipal']"
    ]


def _host_json_problems(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> list[str]:
    doc = json.loads((ROOT / "host.json").read_text())
    edit(doc)
    path = tmp_path / "host.json"
    path.write_text(json.dumps(doc))
    return [p.message for p in check_infra(ROOT, host_json=path) if p.message not in _baseline()]


def test_host_json_records_every_invocation(tmp_path: Path) -> None:
    levels = json.loads((ROOT / "host.json").read_text())["logging"]["logLevel"]
    assert levels["Host.Results"] == "Information"

    def results_error(doc: dict[str, Any]) -> None:
        doc["logging"]["logLevel"]["Host.Results"] = "Error"

    assert _host_json_problems(tmp_path, results_error) == [
        "Host.Results must log at Information: it feeds the requests table, and at a higher "
        "level successful invocations are never recorded"
    ]

    def sampled(doc: dict[str, Any]) -> None:
        doc["logging"]["applicationInsights"]["samplingSettings"]["excludedTypes"] = "Exception"

    problems = _host_json_problems(tmp_path, sampled)
    assert len(problems) == 2 and all("excludedTypes must include" in p for p in problems)


def test_host_json_lets_each_function_log_at_sync_log_level(tmp_path: Path) -> None:
    def drop_worker(doc: dict[str, Any]) -> None:
        del doc["logging"]["logLevel"]["Function.sync_worker.User"]

    assert _host_json_problems(tmp_path, drop_worker) == [
        "Function.sync_worker.User must be Debug or lower, so SYNC_LOG_LEVEL alone decides "
        "which of sync_worker's log lines reach Application Insights"
    ]

    def chatty(doc: dict[str, Any]) -> None:
        doc["logging"]["logLevel"]["Function"] = "Information"

    assert _host_json_problems(tmp_path, chatty) == [
        "Function should be Warning: at Information the host adds two traces per invocation "
        "that the requests table already records"
    ]


def test_alerts_name_only_functions_the_code_declares(
    infra_copy: Callable[..., list[Problem]],
) -> None:
    problems = infra_copy(
        _replace('name == "reconcile_timer"', 'name == "reconcile_tmr"'),
    )
    assert sorted(p.message for p in problems) == [
        "No reconcile run: the query names function 'reconcile_tmr', which the code does not "
        "declare (@function_name in function_app.py, sync/blueprints)",
        "no log alert for missed reconciliation (recognised by reconcile_timer in its query)",
    ]


def test_poison_alert_watches_the_templates_poison_queue(
    infra_copy: Callable[..., list[Problem]],
) -> None:
    problems = infra_copy(_replace("'${jobsQueueName}-poison')", "'other-jobs-poison')"))
    assert sorted(p.message for p in problems) == [
        "Sync jobs moved to the poison queue: the query watches other-jobs-poison, not "
        "sync-jobs-poison",
        "no log alert for poison (recognised by the poison queue's name in its query)",
    ]


def test_missed_reconciliation_window_spans_two_intervals(
    infra_copy: Callable[..., list[Problem]],
) -> None:
    problems = infra_copy(
        _replace(
            "param reconcileSchedule string = '0 * * * * *'",
            "param reconcileSchedule string = '0 0 */1 * * *'",
        )
    )
    assert [p.message for p in problems] == [
        "No reconcile run: window PT1H is shorter than two intervals of the reconcile schedule "
        "'0 0 */1 * * *', so it would fire between healthy runs"
    ]


def test_alerts_notify_the_action_group(infra_copy: Callable[..., list[Problem]]) -> None:
    problems = infra_copy(_replace("          alertActionGroup.id\n", "          'none'\n"))
    assert len(problems) == 4 and all(
        p.message.endswith("notifies no action group of the template") for p in problems
    )


def test_policy_baseline_gives_a_reason_for_every_skipped_check() -> None:
    lines = (ROOT / ".checkov.yaml").read_text().splitlines()
    skipped = [line for line in lines if re.match(r"^\s*-\s*CKV", line)]
    assert len(skipped) >= 5
    for line in skipped:
        reason = line.partition("#")[2].strip()
        assert len(reason) >= 15, f"give a reason: {line.strip()}"
    assert "skip-download: true" in lines


def test_runtime_tree_is_locked_with_hashes() -> None:
    """requirements.txt lists the direct dependencies; requirements.lock pins every package the
    deployed app installs, each with sha256 hashes, and infra/package.sh installs from it."""
    direct = {}
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            direct[re.sub(r"[-_.]+", "-", name.lower())] = version
    locked: dict[str, str] = {}
    hashes: dict[str, int] = {}
    current = ""
    for raw in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^ ;\\]+)", raw)
        if match:
            current = re.sub(r"[-_.]+", "-", match[1].lower())
            locked[current] = match[2]
            hashes[current] = 0
        hashes[current] = hashes.get(current, 0) + raw.count("--hash=sha256:")
    for name, version in direct.items():
        assert locked.get(name) == version, (
            f"{name}: requirements.txt {version}, lock {locked.get(name)}"
        )
    hashes.pop("", None)  # the header before the first package
    assert len(locked) > len(direct) and all(count > 0 for count in hashes.values()), hashes
    assert "azure-functions-worker" not in locked
    script = (INFRA / "package.sh").read_text()
    assert "--require-hashes" in script and '-r "$root/requirements.lock"' in script
