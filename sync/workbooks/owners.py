"""Whether Workbooks still lists the Contact Details of a deleted record [INF]
(workbooks-api.md §2.6, §4.3).

Address resolution (``sync.workbooks.queries``) reads Contact Details (``crm/party_locations``)
by address.  Two facts decide whether that read alone names the live owners of an address:

1. a Person's main location is one of those rows (§4.3, [EX][KB]), so a main email is found
   there as well as on the Person;
2. the rows of a deleted Person are not listed.  Deleted records are hidden (§2.6); whether
   the rows they own are hidden with them is not documented.

Where both hold, the People read that confirms the owners is not needed: one Workbooks call
fewer per lookup, and the lookup's remaining reads go side by side.  Where either fails or
cannot be shown, every owner is confirmed, as before: an email linked to a deleted record
would be hidden, and its address would not wait for a record that appears later.

``WORKBOOKS_DELETED_OWNER_LOCATIONS`` chooses: ``listed`` (always confirm; no reads here),
``hidden`` (trust it, unless the tenant's rows show otherwise) or ``auto`` (the default: trust
it only where the tenant's rows show both facts).  The evidence is read-only and small: the
newest live People and the most recently deleted ones, with their main email (two reads side
by side), then the Contact Details rows holding those addresses (one read); once per
Workbooks database and ``schema_ttl_seconds`` in a process, whatever the number of users.
``decide`` is the pure rule; ``settle`` makes the reads.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sync.core.checks import Check
from sync.core.errors import InvalidRequest, NotFound, RetryLater

from . import schema
from .reads import Record, iter_records, read_page, read_params
from .wire import Cond, any_of, in_list

if TYPE_CHECKING:
    from .client import WorkbooksClient
    from .tenant import Tenant

Mode = Literal["listed", "hidden"]
CHECK = "workbooks.deleted_owner_locations"
SETTING = "WORKBOOKS_DELETED_OWNER_LOCATIONS"
SAMPLE = 20  # People of each kind looked at: a handful shows the rule, few rows are read
MAIN = "main_location[email]"


@dataclass(frozen=True)
class Evidence:
    """What the tenant's own rows show.  ``live`` / ``deleted``: (Person id, main email) of the
    People sampled; ``listed``: (owner id, address) of every Contact Details row found by
    those addresses.  ``unread``: why nothing could be read (empty when it was)."""

    live: tuple[tuple[int, str], ...] = ()
    deleted: tuple[tuple[int, str], ...] = ()
    listed: frozenset[tuple[int, str]] = frozenset()
    unread: str = ""

    def mains_listed(self) -> bool | None:
        """Every live Person's main email is a Contact Details row of theirs (None: no sample)."""
        if not self.live:
            return None
        return all(pair in self.listed for pair in self.live)

    def deleted_hidden(self) -> bool | None:
        """No deleted Person owns a listed row (None: no sample)."""
        if not self.deleted:
            return None
        owners = {owner for owner, _ in self.listed}
        return not any(person in owners for person, _ in self.deleted)

    def describe(self) -> str:
        if self.unread:
            return f"the tenant's rows could not be read ({self.unread})"
        parts = []
        mains, hidden = self.mains_listed(), self.deleted_hidden()
        if mains is None:
            parts.append("no live Person with an email to look at")
        elif mains:
            parts.append(f"the main email of {len(self.live)} live People is a Contact Details row")
        else:
            missing = [str(i) for i, a in self.live if (i, a) not in self.listed]
            parts.append(f"People {', '.join(missing[:5])}: main email not among Contact Details")
        if hidden is None:
            parts.append("no deleted Person with an email to look at")
        elif hidden:
            parts.append(f"none of {len(self.deleted)} deleted People's Contact Details is listed")
        else:
            owners = {owner for owner, _ in self.listed}
            shown = [str(i) for i, _ in self.deleted if i in owners]
            parts.append(f"deleted People {', '.join(shown[:5])} still have Contact Details listed")
        return "; ".join(parts)


def decide(setting: str, evidence: Evidence | None, usable: str = "") -> tuple[Mode, Check]:
    """The mode address resolution runs in, and the check that says why.  ``evidence`` is None
    when nothing was read (``listed`` set, or ``usable`` names what stops the shortcut)."""
    listed_text = "each address lookup confirms Contact Details owners with a People read"
    if usable:
        return "listed", Check(CHECK, "ok", f"{listed_text}: {usable}")
    if setting == "listed" or evidence is None:
        return "listed", Check(CHECK, "ok", f"{listed_text} ({SETTING}=listed)")
    shown = evidence.describe()
    mains, hidden = evidence.mains_listed(), evidence.deleted_hidden()
    if mains is False or hidden is False:
        status: Literal["ok", "warn"] = "warn" if setting == "hidden" else "ok"
        fix = f"set {SETTING}=auto" if setting == "hidden" else ""
        return "listed", Check(CHECK, status, f"{listed_text}: {shown}", fix)
    if mains and hidden:
        return "hidden", Check(
            CHECK, "ok", f"Contact Details alone name the live owners of an address: {shown}"
        )
    if setting == "hidden":
        return "hidden", Check(
            CHECK,
            "warn",
            f"{SETTING}=hidden taken as set, not shown by the tenant: {shown}",
            f"set {SETTING}=auto to have it shown first",
        )
    return "listed", Check(
        CHECK,
        "ok",
        f"{listed_text}: not shown either way ({shown})",
        f"set {SETTING}=hidden once Workbooks confirms that a deleted record's Contact Details "
        "are not listed (one read fewer per address lookup)",
    )


def _shortcut_blocked(tenant: Tenant) -> str:
    """Why the tenant's schema rules the shortcut out ('' when it does not)."""
    for decl in (schema.PEOPLE, schema.CONTACT_DETAILS):
        state = tenant.types.get(decl.key)
        if state is None or state.failure is not None:
            return f"{decl.title} are not usable on this tenant"
    if not tenant.party_columns:
        return "Contact Details rows do not name their owner (party[type], party[id])"
    return ""


# The facts belong to a Workbooks database, not to a user: what one user's client saw serves
# every client given the same ``shared`` map (the service's clients: one per deployment and
# process) for a schema's lifetime, so a tenant of many mailboxes pays the three reads once per
# database, not once per mailbox.
SHARED_KEY = "owner_locations"


async def settle(client: WorkbooksClient, tenant: Tenant) -> None:
    """Set ``tenant.owner_locations`` and add its check; reads only what the setting needs."""
    setting = client.config.deleted_owner_locations
    blocked = _shortcut_blocked(tenant)
    evidence = None if setting == "listed" or blocked else await _evidence(client)
    tenant.owner_locations, check = decide(setting, evidence, blocked)
    tenant.checks.append(check)


def _seen(client: WorkbooksClient) -> dict[str, tuple[float, Evidence]]:
    seen: dict[str, tuple[float, Evidence]] = client.shared.setdefault(SHARED_KEY, {})
    return seen


async def _evidence(client: WorkbooksClient) -> Evidence:
    key = await _database(client)
    now = time.monotonic()
    kept = _seen(client).get(key) if key else None
    if kept is not None and now - kept[0] < client.config.schema_ttl_seconds:
        return kept[1]
    evidence = await gather(client)
    if key and not evidence.unread:  # a failed look is not kept: the next load looks again
        _seen(client)[key] = (now, evidence)
    return evidence


async def _database(client: WorkbooksClient) -> str:
    """The database the client's user works in ('' when the login does not name it)."""
    login = await client.ensure_login()
    if login.database_instance_id is None:
        return ""
    return f"{client.identity.base_url.lower()}|{login.database_instance_id}"


async def forget(client: WorkbooksClient) -> None:
    """Look at the rows again at the next schema load (``doctor`` shows what is true now)."""
    _seen(client).pop(await _database(client), None)


async def gather(client: WorkbooksClient) -> Evidence:
    """The sample (three reads); a refusal or an outage is evidence of nothing."""
    try:
        live, deleted = await asyncio.gather(
            _people(client, None),  # deleted records are hidden unless asked for (§2.6)
            _people(client, Cond("is_deleted", "true")),
        )
        addresses = sorted({a for _, a in (*live, *deleted)})
        listed = await _listed(client, addresses) if addresses else frozenset()
    except (InvalidRequest, NotFound, RetryLater) as exc:
        return Evidence(unread=str(exc))
    return Evidence(tuple(live), tuple(deleted), listed)


async def _people(client: WorkbooksClient, which: Cond | None) -> list[tuple[int, str]]:
    params = read_params([MAIN], which, 0, SAMPLE, (("updated_at", "DESC"), ("id", "DESC")))
    rows = await read_page(client, schema.PEOPLE.endpoint, params)
    return [(int(r["id"]), a) for r in rows if (a := _address(r, MAIN)) and _id(r) is not None]


async def _listed(client: WorkbooksClient, addresses: list[str]) -> frozenset[tuple[int, str]]:
    values = in_list(addresses)
    where = any_of(Cond("email", "eq", values), Cond("alternate_email", "eq", values))
    columns = ["party[id]", "email", "alternate_email"]
    out: set[tuple[int, str]] = set()
    async for row in iter_records(client, schema.CONTACT_DETAILS.endpoint, columns, where):
        owner = row.get("party[id]")
        if not isinstance(owner, int):
            continue
        for column in ("email", "alternate_email"):
            if address := _address(row, column):
                out.add((owner, address))
    return frozenset(out)


def _address(row: Record, column: str) -> str:
    value = row.get(column)
    return value.strip().lower() if isinstance(value, str) else ""


def _id(row: Record) -> int | None:
    value = row.get("id")
    return value if isinstance(value, int) else None
