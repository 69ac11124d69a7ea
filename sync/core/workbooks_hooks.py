"""Workbooks webhooks, decided without I/O: signatures, callback tokens, sealed secrets, what a
delivery says, and which triggers a tenant's subscriptions should cover (workbooks-api.md §4.11).

* **Signature.** Each delivery carries ``X-Workbooks-Signature: sha256=<hex HMAC-SHA256 of the
  raw body with the subscription's secret_key>``.  ``signature_ok`` recomputes it over the bytes
  exactly as received and compares in constant time; a missing, malformed or wrong header is
  refused the same way.
* **Callback token.** Every subscription gets its own callback URL
  ``<base>/api/workbooks/webhook/<token>`` with a random token.  State keeps only the token's
  sha256 (``token_hash``), so a delivery is found by one point read.
* **Sealed secret.** The ``secret_key`` Workbooks returns once, at creation, is needed to check
  every delivery, so it cannot be kept as a hash.  It is sealed with AES-GCM under a key derived
  from the token (``seal`` / ``unseal``): state alone (a backup, a leaked table) cannot produce
  it, and a leaked URL alone cannot either.  Neither is ever logged.
* **A delivery is a hint.** Its records are only read for the email addresses they carry
  (``delivery_addresses``); the retroactive stream then reads Workbooks itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, Field

from sync.core.bodies import BodyError
from sync.core.keys import normalise_address

SIGNATURE_HEADER = "X-Workbooks-Signature"
SIGNATURE_PREFIX = "sha256="
CALLBACK_PATH = "/api/workbooks/webhook/"
MAX_TOKEN_CHARS = 100  # our tokens are 43 characters; anything longer is not ours
MAX_RECORDS = 1000  # records in one delivery we read addresses from
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SEAL_VERSION = "v1"
_KEY_INFO = b"workbooks-webhook-secret/v1"


# ------------------------------------------------------------------------------ triggers


@dataclass(frozen=True)
class Trigger:
    """A Workbooks new-record trigger we subscribe to, and the records it announces."""

    trigger_id: int
    source: str  # the address source it covers: "people", "leads" or "contact_details"
    resource: str  # how a delivery keys its records, e.g. "person"


# [OBS] Pipedream: fixed ids, not listable through the API.  New person and new sales lead are
# public; a new Contact Details row has no public id (the sandbox serves one as an extension,
# WORKBOOKS_CONTACT_DETAILS_TRIGGER_ID), so by default its source is polled.
PERSON_TRIGGER = Trigger(1, "people", "person")
LEAD_TRIGGER = Trigger(5, "leads", "sales_lead")
SOURCES = ("people", "leads", "contact_details")


def wanted_triggers(contact_details_trigger: int = 0) -> tuple[Trigger, ...]:
    """The triggers a tenant's subscriptions should cover."""
    extra = (
        (Trigger(contact_details_trigger, "contact_details", "party_location"),)
        if contact_details_trigger
        else ()
    )
    return (PERSON_TRIGGER, LEAD_TRIGGER, *extra)


# ------------------------------------------------------------------------------ tokens


def new_token() -> str:
    """A callback token: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def plausible_token(token: str) -> bool:
    """Whether ``token`` could be one of ours (checked before any storage read)."""
    return bool(_TOKEN.match(token or ""))


def callback_url(public_base_url: str, token: str) -> str:
    return f"{public_base_url.rstrip('/')}{CALLBACK_PATH}{token}"


def is_our_callback(url: str, public_base_url: str) -> bool:
    return url.startswith(f"{public_base_url.rstrip('/')}{CALLBACK_PATH}")


# ------------------------------------------------------------------------------ secrets


def _sealing_key(token: str) -> bytes:
    return hmac.new(token.encode("utf-8"), _KEY_INFO, hashlib.sha256).digest()


def seal(secret: str, token: str, context: str) -> str:
    """``secret`` encrypted under a key derived from ``token``, bound to ``context`` (the
    token's hash), as text for a table row."""
    nonce = os.urandom(12)
    sealed = AESGCM(_sealing_key(token)).encrypt(nonce, secret.encode("utf-8"), context.encode())
    return f"{_SEAL_VERSION}:{base64.b64encode(nonce + sealed).decode('ascii')}"


def unseal(sealed: str, token: str, context: str) -> str | None:
    """The secret, or None when ``sealed`` was not made with this token and context."""
    version, _, text = sealed.partition(":")
    if version != _SEAL_VERSION:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
        plain = AESGCM(_sealing_key(token)).decrypt(raw[:12], raw[12:], context.encode())
        return plain.decode("utf-8")
    except (InvalidTag, ValueError):
        return None


# ------------------------------------------------------------------------------ signatures


def sign(secret: str, body: bytes) -> str:
    """The header value Workbooks sends for ``body``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of ``X-Workbooks-Signature`` against the raw body."""
    if not secret or not header:
        return False
    given = header.strip()
    digest = given[len(SIGNATURE_PREFIX) :].lower()
    well_formed = given[: len(SIGNATURE_PREFIX)].lower() == SIGNATURE_PREFIX and bool(
        _HEX64.match(digest)
    )
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    # Compared even when malformed (against itself), so timing says nothing about which.
    same = hmac.compare_digest(expected.encode(), (digest if well_formed else expected).encode())
    return well_formed and same


# ------------------------------------------------------------------------------ deliveries


@dataclass(frozen=True)
class Delivery:
    """What one delivery announces: records by resource name, and the addresses they carry."""

    records: int
    resources: tuple[str, ...]
    addresses: frozenset[str]
    unreadable: int  # records with no email column at all: a shape we cannot read


_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _record_addresses(row: Mapping[str, Any]) -> set[str]:
    """Every email address a record carries: the values of columns whose name mentions email
    (``main_location[email]``, ``person_lead_party[main_location[email]]``, ``email``,
    ``alternate_email``), whatever the tenant's row looks like."""
    out: set[str] = set()
    for key, value in row.items():
        if isinstance(value, str) and "email" in key.lower() and "@" in value:
            address = normalise_address(value)
            if _ADDRESS.match(address):
                out.add(address)
    return out


def parse_delivery(payload: Any) -> Delivery:
    """A delivery body (as ``read_json`` returned it): a JSON array of objects, each keyed by
    one resource name (``[{"person": {...}}]``).  ``BodyError`` for another shape."""
    if not isinstance(payload, list):
        raise BodyError(400, "a delivery is a JSON array of records keyed by resource name")
    if len(payload) > MAX_RECORDS:
        raise BodyError(413, f"more than {MAX_RECORDS} records in one delivery")
    addresses: set[str] = set()
    resources: list[str] = []
    unreadable = 0
    for item in payload:
        if not isinstance(item, dict) or len(item) != 1:
            raise BodyError(400, "each record of a delivery is an object with one resource key")
        ((resource, row),) = item.items()
        if not isinstance(row, dict):
            raise BodyError(400, f"the {str(resource)[:40]!r} record is not an object")
        resources.append(str(resource)[:40])
        unreadable += not any("email" in str(k).lower() for k in row)
        addresses |= _record_addresses(row)
    return Delivery(len(payload), tuple(dict.fromkeys(resources)), frozenset(addresses), unreadable)


# ------------------------------------------------------------------------------ tenants


def tenant_key(workbooks_url: str, database_instance_id: int | None, fallback: str) -> str:
    """One Workbooks database: its service URL and the instance the login names (several
    customers share ``secure.workbooks.com``).  Without an instance id, the identity's
    fingerprint (``fallback``) stands for it."""
    basis = (
        f"{workbooks_url.rstrip('/').lower()}\0{database_instance_id}"
        if database_instance_id is not None
        else f"identity\0{fallback}"
    )
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:40]


# ------------------------------------------------------------------------------ upkeep


@dataclass(frozen=True)
class Existing:
    """A webhook subscription as Workbooks lists it."""

    subscription_id: int
    trigger_id: int
    callback_url: str
    enabled: bool
    lock_version: int = 0


@dataclass(frozen=True)
class Known:
    """A subscription our state knows: its id and the hash of its callback token."""

    trigger_id: int
    subscription_id: int
    token_hash: str


@dataclass(frozen=True)
class UpkeepPlan:
    """What the subscription upkeep of one tenant does: subscriptions to create (by trigger),
    to keep, and to delete at Workbooks (ours, but no longer right)."""

    create: tuple[Trigger, ...]
    keep: tuple[Known, ...]
    delete: tuple[Existing, ...]


def plan_upkeep(
    wanted: Sequence[Trigger],
    known: Iterable[Known],
    existing: Iterable[Existing],
    public_base_url: str,
) -> UpkeepPlan:
    """Keep each wanted trigger's subscription that Workbooks still lists, enabled, calling our
    URL with its token; create the missing ones; delete every other subscription of ours (a
    disabled one, one for a trigger no longer wanted, one our state lost track of after a
    crash between its creation and its record, one calling an old base URL)."""
    listed = {e.subscription_id: e for e in existing}
    ours = {k.subscription_id: k for k in known}
    keep: dict[int, Known] = {}
    wanted_ids = {t.trigger_id for t in wanted}
    for k in ours.values():
        e = listed.get(k.subscription_id)
        if (
            e is not None
            and e.enabled
            and e.trigger_id == k.trigger_id
            and k.trigger_id in wanted_ids
            and k.trigger_id not in keep
            and is_our_callback(e.callback_url, public_base_url)
            and token_hash(e.callback_url.rsplit("/", 1)[-1]) == k.token_hash
        ):
            keep[k.trigger_id] = k
    kept = {k.subscription_id for k in keep.values()}
    delete = [
        e
        for e in listed.values()
        if e.subscription_id not in kept
        and (e.subscription_id in ours or is_our_callback(e.callback_url, public_base_url))
    ]
    create = [t for t in wanted if t.trigger_id not in keep]
    return UpkeepPlan(tuple(create), tuple(keep.values()), tuple(delete))


def verify_due(verified_at: datetime | None, now: datetime, every: timedelta) -> bool:
    """Whether a tenant's subscriptions should be checked against Workbooks again: the renewal
    sweep runs for every mailbox, and mailboxes of one tenant share the subscriptions."""
    return verified_at is None or now - verified_at >= every


# ------------------------------------------------------------------------------ state


class HookSubscription(BaseModel):
    """One of a tenant's webhook subscriptions: the trigger, the Workbooks id, and the hash of
    its callback token (the token and the secret are never stored)."""

    trigger_id: int
    source: str
    subscription_id: int
    token_hash: str
    created_at: datetime


class HookTenant(BaseModel):
    """A Workbooks database's webhook state, shared by every mailbox that syncs with it:
    whether a key may manage triggers, its subscriptions, the sources left to polling (and
    why), the poll's watermarks, and the upkeep lease that keeps two mailboxes of the tenant
    from creating subscriptions at once."""

    tenant: str
    workbooks_url: str
    allowed: bool | None = None  # None: not known yet
    reason: str = ""  # why webhooks are not (fully) used
    subscriptions: list[HookSubscription] = Field(default_factory=list)
    polled_sources: dict[str, str] = Field(default_factory=dict)  # source -> why it is polled
    verified_at: datetime | None = None
    upkeep_owner: str = ""
    upkeep_until: datetime | None = None
    poll_marks: dict[str, datetime] = Field(default_factory=dict)  # source -> created_at
    polled_at: datetime | None = None

    def webhook_sources(self) -> set[str]:
        return {s.source for s in self.subscriptions}


class HookToken(BaseModel):
    """What a delivery's token leads to: its tenant, trigger and sealed secret."""

    token_hash: str
    tenant: str
    workbooks_url: str
    trigger_id: int
    subscription_id: int
    sealed_secret: str = Field(repr=False)
    created_at: datetime


def polled(tenant: HookTenant | None) -> tuple[str, ...]:
    """The address sources the created-since poll reads for a tenant: every one no webhook
    subscription covers."""
    covered = tenant.webhook_sources() if tenant is not None else set()
    return tuple(s for s in SOURCES if s not in covered)
