"""A Key Vault reference the platform did not resolve stops the app with a clear message."""

from __future__ import annotations

import pytest

from sync.settings import SettingsError, load_settings

REFERENCE = "@Microsoft.KeyVault(VaultName=kv-sync;SecretName=graph-client-secret)"


def test_unresolved_reference_names_the_setting_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRAPH_CLIENT_SECRET", REFERENCE)
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert "GRAPH_CLIENT_SECRET: still reads '@Microsoft.KeyVault(...)'" in text
    assert "Key Vault Secrets User" in text
    assert "kv-sync" not in text and "SecretName" not in text  # the reference is not echoed


@pytest.mark.parametrize(
    "name",
    ["SYNC_PUBLIC_BASE_URL", "WORKBOOKS_USER_AGENT", "AzureWebJobsStorage", "SYNC_LOG_LEVEL"],
)
def test_every_setting_group_refuses_unresolved_references(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, f"  {REFERENCE}")
    with pytest.raises(SettingsError, match=rf"{name}[^\n]*still reads '@Microsoft\.KeyVault"):
        load_settings()


def test_resolved_values_and_empty_secret_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_CLIENT_SECRET", "a-real-secret-value")
    assert load_settings().graph.client_secret is not None
    monkeypatch.setenv("GRAPH_CLIENT_SECRET", "")  # federated credential
    settings = load_settings()
    assert not (settings.graph.client_secret and settings.graph.client_secret.get_secret_value())
