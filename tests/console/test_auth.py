"""Who is asking, and whether the platform's header can be believed at all."""

from __future__ import annotations

import base64
import json

import pytest

from sync.console.auth import (
    ADMIN_ROLE,
    Mode,
    PrincipalError,
    encode_principal,
    front_door,
    parse_principal,
    tenant_problem,
)
from sync.core.state_models import Mailbox

TENANT = "11111111-2222-3333-4444-555555555555"


def _header(payload: object) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def test_the_platform_header_with_long_claim_names_and_its_own_role_type() -> None:
    # The shape App Service sends for an Entra ID sign-in (v1-style claim names).
    header = _header(
        {
            "auth_typ": "aad",
            "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
            "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
            "claims": [
                {
                    "typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
                    "val": "Ann@Contoso.com",
                },
                {"typ": "name", "val": "Ann Example"},
                {
                    "typ": "http://schemas.microsoft.com/identity/claims/objectidentifier",
                    "val": "oid-1",
                },
                {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": TENANT},
                {
                    "typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
                    "val": ADMIN_ROLE,
                },
                {
                    "typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
                    "val": "Other",
                },
                {"typ": "nonce", "val": 42},
            ],
        }
    )
    viewer = parse_principal(header)
    assert (viewer.name, viewer.display_name, viewer.object_id, viewer.tenant_id) == (
        "ann@contoso.com",
        "Ann Example",
        "oid-1",
        TENANT,
    )
    assert viewer.roles == {ADMIN_ROLE, "Other"} and viewer.is_admin


def test_short_claims_and_unpadded_base64() -> None:
    header = encode_principal("bob@contoso.com", roles=("Reader",)).rstrip("=")
    viewer = parse_principal(header)
    assert viewer.name == "bob@contoso.com" and not viewer.is_admin


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("%%%", "not base64 JSON"),
        (base64.b64encode(b"[1, 2]").decode(), "not a JSON object"),
        (_header({"claims": "nope"}), "no claims"),
        (_header({"claims": [{"typ": "name", "val": "No Address"}]}), "names nobody"),
        ("A" * 40_000, "too large"),
    ],
)
def test_a_header_not_from_the_platform_is_refused(header: str, message: str) -> None:
    with pytest.raises(PrincipalError, match=message):
        parse_principal(header)


def test_front_door_trusts_the_header_only_behind_a_sign_in() -> None:
    assert front_door({}).mode is Mode.OFF
    assert front_door({"SYNC_CONSOLE_DEV_LOGIN": "1"}).mode is Mode.DEV
    azure = {"WEBSITE_INSTANCE_ID": "abc", "WEBSITE_SITE_NAME": "func-x"}
    off = front_door(azure)
    assert off.mode is Mode.OFF and "App Service Authentication is not enabled" in off.problem
    assert front_door({**azure, "WEBSITE_AUTH_ENABLED": "True"}).mode is Mode.AZURE
    # The development sign-in is refused in Azure, even with Easy Auth on.
    refused = front_door({**azure, "WEBSITE_AUTH_ENABLED": "True", "SYNC_CONSOLE_DEV_LOGIN": "1"})
    assert refused.mode is Mode.OFF and "refused here" in refused.problem
    assert front_door({"WEBSITE_SITE_NAME": "x", "SYNC_CONSOLE_DEV_LOGIN": "1"}).mode is Mode.OFF


def test_login_urls_by_mode_stay_on_this_site() -> None:
    assert front_door({"SYNC_CONSOLE_DEV_LOGIN": "1"}).login_url("/api/console/me?x=1") == (
        "/.auth/login/dev?post_login_redirect_uri=/api/console/me%3Fx%3D1"
    )
    azure = front_door({"WEBSITE_SITE_NAME": "x", "WEBSITE_AUTH_ENABLED": "true"})
    assert azure.login_url("/api/console").startswith("/.auth/login/aad?")


def _mailbox(**extra: str) -> Mailbox:
    return Mailbox(
        id="ann@contoso.com", workbooks_url="https://wb.example", api_key_ref="env:K", **extra
    )


def test_owning_a_mailbox_by_address_or_by_object_id() -> None:
    ann = parse_principal(
        encode_principal("ann@contoso.com", object_id="7f0c2d9e-1111-2222-3333-444455556666")
    )
    assert ann.owns(_mailbox())
    assert not parse_principal(encode_principal("bob@contoso.com")).owns(_mailbox())
    bound = _mailbox(graph_user="7F0C2D9E-1111-2222-3333-444455556666")
    assert ann.owns(bound)
    same_name_other_account = parse_principal(
        encode_principal("ann@contoso.com", object_id="00000000-1111-2222-3333-444455556666")
    )
    assert not same_name_other_account.owns(bound)
    assert not parse_principal(encode_principal("ann@contoso.com")).owns(bound)
    # A Graph user that is a UPN, not an object id: the address decides.
    assert ann.owns(_mailbox(graph_user="ann.alias@contoso.com"))


def test_another_tenant_is_refused_when_the_tenant_is_known() -> None:
    ours = parse_principal(encode_principal("a@x.com", tenant_id=TENANT))
    theirs = parse_principal(
        encode_principal("a@x.com", tenant_id="99999999-2222-3333-4444-555555555555")
    )
    assert tenant_problem(ours, TENANT) == ""
    assert "another organisation" in tenant_problem(theirs, TENANT)
    assert tenant_problem(theirs, "contoso.onmicrosoft.com") == ""  # not a GUID: nothing to compare
