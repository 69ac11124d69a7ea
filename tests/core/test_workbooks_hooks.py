"""The pure half of Workbooks webhooks (``sync.core.workbooks_hooks``): signatures over the raw
body, callback tokens, sealed secrets, what a delivery announces, and the upkeep plan."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from sync.core.bodies import BodyError
from sync.core.workbooks_hooks import (
    LEAD_TRIGGER,
    PERSON_TRIGGER,
    Existing,
    HookSubscription,
    HookTenant,
    Known,
    callback_url,
    new_token,
    parse_delivery,
    plan_upkeep,
    plausible_token,
    polled,
    seal,
    sign,
    signature_ok,
    tenant_key,
    token_hash,
    unseal,
    verify_due,
    wanted_triggers,
)

BASE = "https://sync.example.net"
SECRET = "a" * 64
BODY = b'[{"person":{"id":1,"main_location[email]":"Ann@X.com"}}]'


def workbooks_signature(secret: str, body: bytes) -> str:
    """What Workbooks sends (workbooks-api.md §4.11), computed independently of the product."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_signature_over_the_raw_body_is_accepted() -> None:
    header = workbooks_signature(SECRET, BODY)
    assert sign(SECRET, BODY) == header
    assert signature_ok(SECRET, BODY, header)
    assert signature_ok(SECRET, BODY, header.upper().replace("SHA256=", "sha256="))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256=" + "0" * 64,
        "sha512=" + hashlib.sha512(BODY).hexdigest(),
        workbooks_signature(SECRET, BODY)[7:],  # the digest without its prefix
        workbooks_signature(SECRET, BODY) + "00",
        workbooks_signature("another secret", BODY),
        workbooks_signature(SECRET, BODY + b" "),  # one byte more: not the same body
        "sha256=ü" + "0" * 63,
    ],
)
def test_anything_else_is_refused(header: str | None) -> None:
    assert not signature_ok(SECRET, BODY, header)


def test_the_body_is_checked_as_received_not_as_reparsed() -> None:
    spaced = b'[ {"person": {"id": 1, "main_location[email]": "Ann@X.com"}} ]'
    assert parse_delivery([{"person": {"id": 1}}]).records == 1
    assert not signature_ok(SECRET, spaced, workbooks_signature(SECRET, BODY))
    assert not signature_ok("", BODY, workbooks_signature("", BODY))  # no secret, no pass


def test_tokens_are_random_url_safe_and_stored_only_as_a_hash() -> None:
    a, b = new_token(), new_token()
    assert a != b and plausible_token(a) and len(a) == 43
    assert token_hash(a) == hashlib.sha256(a.encode()).hexdigest() != a
    assert callback_url(BASE + "/", a) == f"{BASE}/api/workbooks/webhook/{a}"
    for bad in ("", "short", "a/b" * 10, "x" * 101, "../../etc/passwd" + "a" * 20):
        assert not plausible_token(bad)


def test_a_sealed_secret_opens_only_with_its_token_and_context() -> None:
    token = new_token()
    sealed = seal(SECRET, token, token_hash(token))
    assert SECRET not in sealed and sealed.startswith("v1:")
    assert seal(SECRET, token, token_hash(token)) != sealed  # a fresh nonce each time
    assert unseal(sealed, token, token_hash(token)) == SECRET
    assert unseal(sealed, new_token(), token_hash(token)) is None
    assert unseal(sealed, token, "another context") is None
    assert unseal("v1:not base64!", token, token_hash(token)) is None
    assert unseal("v9:" + sealed[3:], token, token_hash(token)) is None
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    assert unseal(tampered, token, token_hash(token)) is None


def test_a_delivery_is_read_for_its_addresses_only() -> None:
    payload = [
        {"person": {"id": 1, "main_location[email]": " Ann@X.com ", "name": "a@b.c"}},
        {"person": {"id": 2, "main_location[email]": None, "main_location[alternate_email]": ""}},
        {
            "sales_lead": {
                "id": 3,
                "person_lead_party[main_location[email]]": "lee@prospect.com",
                "org_lead_party[main_location[email]]": "not an address",
            }
        },
        {"party_location": {"id": 4, "email": "cd@home.net", "alternate_email": "alt@home.net"}},
        {"case": {"id": 5, "name": "no email column at all"}},
    ]
    delivery = parse_delivery(payload)
    assert delivery.records == 5
    assert delivery.resources == ("person", "sales_lead", "party_location", "case")
    assert delivery.addresses == {"ann@x.com", "lee@prospect.com", "cd@home.net", "alt@home.net"}
    assert delivery.unreadable == 1  # only the case: person 2 has email columns, just empty


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"person": {}}, 400),
        ([{"person": {}, "case": {}}], 400),
        ([{}], 400),
        (["person"], 400),
        ([{"person": "x"}], 400),
        ([{"person": {"id": 1}}] * 1001, 413),
    ],
)
def test_a_body_of_another_shape_is_refused(payload: object, status: int) -> None:
    with pytest.raises(BodyError) as info:
        parse_delivery(payload)
    assert info.value.status == status


def test_tenants_are_databases_not_hosts() -> None:
    one = tenant_key("https://secure.workbooks.com/", 47119, "fp1")
    assert one == tenant_key("https://SECURE.workbooks.com", 47119, "fp2")  # another key
    assert one != tenant_key("https://secure.workbooks.com", 47120, "fp1")  # another database
    assert tenant_key("https://x", None, "fp1") != tenant_key("https://x", None, "fp2")


def test_wanted_triggers_cover_people_and_leads_and_contact_details_when_configured() -> None:
    assert wanted_triggers() == (PERSON_TRIGGER, LEAD_TRIGGER)
    assert [t.source for t in wanted_triggers(9001)] == ["people", "leads", "contact_details"]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    tenant = HookTenant(tenant="t", workbooks_url="https://x")
    assert polled(None) == polled(tenant) == ("people", "leads", "contact_details")
    sub = HookSubscription(
        trigger_id=1, source="people", subscription_id=4, token_hash="h", created_at=now
    )
    assert polled(tenant.model_copy(update={"subscriptions": [sub]})) == (
        "leads",
        "contact_details",
    )


def _existing(sid: int, trigger: int, token: str, *, enabled: bool = True) -> Existing:
    return Existing(sid, trigger, callback_url(BASE, token), enabled)


def test_upkeep_keeps_what_is_right_and_remakes_the_rest() -> None:
    tokens = {n: new_token() for n in ("p", "l", "stray", "old")}
    known = [
        Known(1, 10, token_hash(tokens["p"])),
        Known(5, 11, token_hash(tokens["l"])),
        Known(1, 13, token_hash(tokens["old"])),  # a second one for people: not kept
    ]
    existing = [
        _existing(10, 1, tokens["p"]),
        _existing(11, 5, tokens["l"], enabled=False),  # an admin disabled it
        _existing(12, 1, tokens["stray"]),  # ours by URL; its record was lost in a crash
        _existing(13, 1, tokens["old"]),
        Existing(20, 1, "https://someone-else.example/hook", True),  # not ours: left alone
    ]
    plan = plan_upkeep(wanted_triggers(), known, existing, BASE)
    assert [k.subscription_id for k in plan.keep] == [10]
    assert sorted(e.subscription_id for e in plan.delete) == [11, 12, 13]
    assert plan.create == (LEAD_TRIGGER,)


def test_upkeep_remakes_subscriptions_that_are_gone_or_point_elsewhere() -> None:
    token = new_token()
    known = [Known(1, 10, token_hash(token)), Known(5, 11, token_hash(new_token()))]
    moved = Existing(11, 5, callback_url("https://old-app.example", token), True)
    plan = plan_upkeep(wanted_triggers(), known, [moved], BASE)  # 10 was deleted at Workbooks
    assert plan.keep == () and plan.create == (PERSON_TRIGGER, LEAD_TRIGGER)
    assert [e.subscription_id for e in plan.delete] == [11]  # ours by record: removed
    assert plan_upkeep((), known, [moved], BASE).delete == (moved,)  # webhooks off: all go


def test_a_tenant_is_checked_again_only_after_a_while() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    hour = timedelta(hours=1)
    assert verify_due(None, now, hour)
    assert not verify_due(now - timedelta(minutes=59), now, hour)
    assert verify_due(now - hour, now, hour)
