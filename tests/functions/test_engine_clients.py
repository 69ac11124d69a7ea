"""Workbooks clients are per credential (the 5-in-flight cap is per credential) and follow
key rotation; secrets resolve from references, never from state."""

from __future__ import annotations

from typing import Any

import pytest

from sync.core.state_models import Mailbox
from sync.engine.clients import workbooks_client
from sync.secrets import SecretError


def _mb(addr: str, ref: str) -> Mailbox:
    return Mailbox(id=addr, workbooks_url="https://secure.workbooks.com", api_key_ref=ref)


async def test_mailboxes_sharing_a_key_share_one_client(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WB_SHARED", "key-1")
    monkeypatch.setenv("WB_OTHER", "key-2")
    a = await workbooks_client(services, _mb("a@example.com", "env:WB_SHARED"))
    b = await workbooks_client(services, _mb("b@example.com", "env:WB_SHARED"))
    c = await workbooks_client(services, _mb("c@example.com", "env:WB_OTHER"))
    assert a is b and a is not c
    assert "key-1" not in repr(a)


async def test_rotated_key_gets_a_fresh_client(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WB_ROT", "old-key")
    old = await workbooks_client(services, _mb("a@example.com", "env:WB_ROT"))
    monkeypatch.setenv("WB_ROT", "new-key")
    new = await workbooks_client(services, _mb("a@example.com", "env:WB_ROT"))
    assert new is not old
    assert old not in services.cache.workbooks.values()


async def test_missing_secret_is_a_clear_error(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WB_NOPE", raising=False)
    with pytest.raises(SecretError, match="WB_NOPE is not set"):
        await workbooks_client(services, _mb("a@example.com", "env:WB_NOPE"))
    with pytest.raises(SecretError, match="SYNC_SECRETS_PROVIDER=keyvault"):
        await workbooks_client(services, _mb("a@example.com", "keyvault:wb-key"))
