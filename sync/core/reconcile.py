"""The reconciler: (Outlook changes, Workbooks changes, links, policy) -> Plan.  Pure.

No I/O and no clock: the engine fetches, this module decides, the engine applies.  Rules:

* **Identity.**  A pair is found by its link (Outlook immutable id, or Workbooks id); an Outlook
  item without a link but carrying our stamped Workbooks id is re-matched to that record (a
  full resync after an expired delta token or a lost subscription never duplicates).  A new
  shared item the engine looked up by address (``Identity.matches``) is linked to the one
  record holding its addresses, or reported as *ambiguous* when several do
  (``sync.core.identity``).  A record has at most one item per mailbox: an item whose record
  (by stamp, creation reference or address) is held by another item is reported as a
  *duplicate* and gets nothing.  Two new items of one plan with a common address: the first
  may create a record, the second is a duplicate of the first.
* **Sharing.**  Outlook items sync only with the sharing category; an unlinked shared item
  creates a Workbooks record only when ``create_from_outlook`` is on.  Removing the category
  from a linked item unlinks it (nothing is deleted) and is remembered as the user's removal.
* **Removals.**  A record the user removed from Outlook (``Identity.removed``: deleted under
  ``outlook_delete == "unlink"``, or unshared) never gets a new Outlook item; sharing an item
  for it again links it.
* **Changes.**  A side that did not report a change is taken to equal the snapshot, so the
  three-way merge writes only what moved; an item whose fields equal the snapshot writes nothing.
* **Deletes.**  Deleted in Workbooks -> the Outlook item is deleted if the service created it,
  otherwise unlinked.  Deleted in Outlook -> unlinked (and remembered under ``unlink``), or
  the Workbooks record deleted when ``outlook_delete == "delete"`` and the record is in the
  user's scope (otherwise unlinked and remembered).  Leaving the Workbooks scope
  removes the Outlook item if the service created it and never deletes in Workbooks; an item
  the user shared stays linked (the user's share is its scope).  Leaving the calendar window
  only unlinks (the window is not a scope).
* **Direction.**  ``OUTLOOK_TO_WORKBOOKS`` (notification and push jobs) never writes Outlook
  fields; it may still stamp the Workbooks id on an Outlook item it just got a record for or
  linked to one.  A pair it links (first link, re-match) is *unsettled*: the next two-way run
  is given its record and writes Workbooks' values into Outlook.
  Workbooks records given to a one-way run (re-read after a stale write) are merged for the
  pairs whose Outlook item changed; their own changes wait for the next two-way run.
* **Brake.**  If the planned deletes and updates touch more than ``mass_change_share`` of the
  linked items (and at least ``mass_change_min_items``), the plan is marked stopped with the
  reason; the engine writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from sync.core import identity
from sync.core.identity import Candidate, Verdict
from sync.core.merge import ConflictPolicy, FieldConflict, merge
from sync.core.state_models import Link, MailboxPolicy, OutlookDelete, RemovalHow

Fields = Mapping[str, Any]


class Direction(StrEnum):
    OUTLOOK_TO_WORKBOOKS = "outlook_to_workbooks"
    BOTH = "both"


@dataclass(frozen=True)
class SyncPolicy:
    """The per-mailbox switches the planner needs (from ``MailboxPolicy``)."""

    create_from_outlook: bool = True
    outlook_delete: OutlookDelete = "unlink"
    conflict_policy: ConflictPolicy = "latest"
    mass_change_share: float = 0.2
    mass_change_min_items: int = 10

    @classmethod
    def from_mailbox(cls, policy: MailboxPolicy) -> SyncPolicy:
        return cls(
            create_from_outlook=policy.create_from_outlook,
            outlook_delete=policy.outlook_delete,
            conflict_policy=policy.conflict_policy,
            mass_change_share=policy.mass_change_share,
            mass_change_min_items=policy.mass_change_min_items,
        )


@dataclass(frozen=True)
class OutlookItem:
    """A changed Outlook item, already mapped to canonical fields."""

    outlook_id: str
    fields: Fields
    shared: bool = True
    stamped_id: int | None = None
    change_key: str = ""
    modified: datetime | None = None
    # How ``stamped_id`` was found: our stamp on the item, or a record whose
    # created_through_reference names the item (a run that died before stamping it).
    found_by: Literal["stamp", "reference"] = "stamp"


@dataclass(frozen=True)
class OutlookRemoval:
    """An ``@removed`` delta entry.  ``deleted`` False: the item still exists but left the
    delta's view (e.g. an event moved out of the calendar window), so it is only unlinked.
    ``delete_record``: the Workbooks record only stood for this item and goes with it whatever
    ``outlook_delete`` says (a deleted series' upcoming meeting the service created)."""

    outlook_id: str
    deleted: bool = True
    delete_record: bool = False


@dataclass(frozen=True)
class WorkbooksRecord:
    """A changed Workbooks record, mapped to canonical fields, with its scope decided."""

    workbooks_id: int
    workbooks_type: str
    lock_version: int
    fields: Fields
    deleted: bool = False
    in_scope: bool = True
    in_window: bool = True
    modified: datetime | None = None
    reference: str = ""  # created_through_reference (the Outlook id it was created from)


class ActionKind(StrEnum):
    CREATE_OUTLOOK = "create_outlook"  # new Outlook item for a Workbooks record
    CREATE_WORKBOOKS = "create_workbooks"  # new Workbooks record for a shared Outlook item
    UPDATE = "update"  # write changed fields to one or both sides
    LINK = "link"  # store or refresh the link only (re-match, new versions)
    DELETE_OUTLOOK = "delete_outlook"
    DELETE_WORKBOOKS = "delete_workbooks"
    UNLINK = "unlink"


@dataclass(frozen=True)
class Action:
    """One pair's decision.  ``fields`` is the canonical state after the action (the new
    snapshot); ``to_workbooks`` / ``to_outlook`` name the fields to write on each side."""

    kind: ActionKind
    reason: str
    outlook_id: str | None = None
    workbooks_id: int | None = None
    workbooks_type: str = ""
    lock_version: int = 0
    change_key: str = ""
    fields: Fields = field(default_factory=dict)
    to_workbooks: frozenset[str] = frozenset()
    to_outlook: frozenset[str] = frozenset()
    created_by_service: bool = False
    stamp_outlook: bool = False  # write our Workbooks id onto the Outlook item
    previous: Link | None = None
    remember: RemovalHow | None = None  # a removal by the user: record it so no run undoes it
    unsettled: bool = False  # see ``Link.unsettled``

    @property
    def touches_existing(self) -> bool:
        """Deletes and field changes of already linked items (what the brake counts).  Giving
        Outlook Workbooks' values for a pair a one-way run just linked (unsettled) completes
        that first link: it is not a change to an established pair."""
        if self.kind in (ActionKind.DELETE_OUTLOOK, ActionKind.DELETE_WORKBOOKS):
            return True
        previous = self.previous
        return self.kind == ActionKind.UPDATE and previous is not None and not previous.unsettled

    @property
    def writes(self) -> bool:
        """Does this action call an external API (as opposed to only storing a link)?"""
        return self.kind not in (ActionKind.LINK, ActionKind.UNLINK) or self.stamp_outlook


@dataclass(frozen=True)
class RecordedConflict:
    outlook_id: str | None
    workbooks_id: int | None
    conflict: FieldConflict

    def describe(self) -> str:
        c = self.conflict
        return (
            f"conflict on {self.workbooks_id}/{c.field}: workbooks={c.workbooks!r} "
            f"outlook={c.outlook!r} -> {c.winner}"
        )


@dataclass(frozen=True)
class Issue:
    """A shared item that got nothing: ``ambiguous`` (``candidates``) or ``duplicate`` of the
    item ``linked_outlook_id``, which holds record ``workbooks_id``."""

    kind: Literal["ambiguous", "duplicate"]
    outlook_id: str
    fields: Fields
    matched_by: Literal["stamp", "reference", "email"]
    candidates: tuple[Candidate, ...] = ()
    workbooks_id: int | None = None
    workbooks_type: str = ""
    linked_outlook_id: str = ""


@dataclass(frozen=True)
class Identity:
    """What the planner knows about identity beyond the links.

    ``matches``: new shared items looked up by address, each with the records found (an item
    not in it was not looked up: it is created as before); ``slots``: the fields holding those
    addresses; ``removed``: records the user removed from Outlook; ``issues``: items with a
    recorded issue (the plan says which of them it cleared)."""

    matches: Mapping[str, Sequence[Candidate]] = field(default_factory=dict)
    slots: tuple[str, ...] = ()
    removed: frozenset[int] = frozenset()
    issues: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Brake:
    affected: int
    total: int
    share: float
    reason: str


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    conflicts: tuple[RecordedConflict, ...] = ()
    brake: Brake | None = None
    skipped: Mapping[str, int] = field(default_factory=dict)
    issues: tuple[Issue, ...] = ()
    cleared: tuple[str, ...] = ()  # items whose recorded issue no longer holds
    forget: tuple[int, ...] = ()  # removals of records since deleted in Workbooks

    @property
    def stopped(self) -> bool:
        return self.brake is not None

    def count(self, kind: ActionKind) -> int:
        return sum(1 for a in self.actions if a.kind == kind)

    @property
    def write_count(self) -> int:
        return sum(1 for a in self.actions if a.writes)


class LinkIndex:
    """Links of one (mailbox, stream), looked up by either side's id."""

    def __init__(self, links: Iterable[Link] = ()) -> None:
        self.by_outlook: dict[str, Link] = {}
        self.by_workbooks: dict[int, Link] = {}
        for link in links:
            self.add(link)

    def __len__(self) -> int:
        return len(self.by_outlook)

    def add(self, link: Link) -> None:
        self.by_outlook[link.outlook_id] = link
        self.by_workbooks[link.workbooks_id] = link


WindowCheck = Callable[[Fields], bool]


@dataclass
class _Planner:
    links: LinkIndex
    policy: SyncPolicy
    direction: Direction
    workbooks_type: str
    ident: Identity = field(default_factory=Identity)
    actions: list[Action] = field(default_factory=list)
    conflicts: list[RecordedConflict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    forget: list[int] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # Outlook ids this plan decided on
    done_workbooks: set[int] = field(default_factory=set)  # records this plan decided on
    holders: dict[int, str] = field(default_factory=dict)  # record -> item holding it now
    released: set[int] = field(default_factory=set)  # records whose pair ends in this plan
    new_addresses: dict[str, str] = field(default_factory=dict)  # address -> new item's id

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    @property
    def both(self) -> bool:
        return self.direction == Direction.BOTH

    def holder(self, workbooks_id: int) -> str | None:
        """The Outlook item that holds this record after this plan, if any."""
        if workbooks_id in self.holders:
            return self.holders[workbooks_id]
        link = self.links.by_workbooks.get(workbooks_id)
        if link is not None and workbooks_id not in self.released:
            return link.outlook_id
        return None

    def hold(self, workbooks_id: int, outlook_id: str) -> None:
        self.done_workbooks.add(workbooks_id)
        self.holders[workbooks_id] = outlook_id

    def release(self, link: Link) -> None:
        self.done_workbooks.add(link.workbooks_id)
        self.released.add(link.workbooks_id)

    # ---- Outlook side -------------------------------------------------------------------

    def removal(self, gone: OutlookRemoval, records: Mapping[int, WorkbooksRecord]) -> None:
        self.seen.add(gone.outlook_id)
        link = self.links.by_outlook.get(gone.outlook_id)
        if link is None:
            self.skip("removed_unlinked")
            return
        self.release(link)
        record = records.get(link.workbooks_id)
        really = gone.deleted and not (record is not None and record.deleted)
        policy = self.policy.outlook_delete
        # ``delete`` deletes only a record in the user's scope: an item the user shared and
        # linked to a colleague's record is theirs to delete, the record is not.  A record that
        # only stood for this item (a deleted series' upcoming meeting) goes whatever the policy.
        mine = record is None or record.in_scope
        if really and (policy == "delete" or gone.delete_record) and mine:
            self.add(
                link,
                ActionKind.DELETE_WORKBOOKS,
                "deleted in Outlook",
                lock_version=record.lock_version if record else link.workbooks_lock_version,
            )
        elif really and policy != "restore":
            why = "deleted in Outlook" + ("" if mine else " (record kept: not in your scope)")
            self.add(link, ActionKind.UNLINK, why, remember="deleted")
        else:
            why = "deleted in Outlook" if gone.deleted else "left the Outlook view"
            self.add(link, ActionKind.UNLINK, why)

    def item(self, item: OutlookItem, records: Mapping[int, WorkbooksRecord]) -> None:
        self.seen.add(item.outlook_id)
        link = self.links.by_outlook.get(item.outlook_id)
        if link is not None:
            if item.shared:
                self.paired(link, item, records.get(link.workbooks_id))
            else:
                # Unsharing is the user's removal: the item stays theirs, untouched.
                self.release(link)
                self.add(
                    link,
                    ActionKind.UNLINK,
                    "sharing category removed in Outlook",
                    remember="unshared",
                )
        elif not item.shared:
            self.skip("not_shared")
        elif item.stamped_id is not None:
            self.claimed(item, item.stamped_id, records.get(item.stamped_id))
        elif item.outlook_id in self.ident.matches:
            self.match(item, self.ident.matches[item.outlook_id])
        else:
            self.create(item, "new shared Outlook item")

    def create(self, item: OutlookItem, why: str) -> None:
        if not self.policy.create_from_outlook:
            self.skip("create_from_outlook_off")
            return
        mine = identity.addresses(item.fields, self.ident.slots)
        twin = next((self.new_addresses[a] for a in mine if a in self.new_addresses), None)
        if twin is not None:
            # Another new item of this plan creates a record with this address: one record.
            self.duplicate(item, "email", None, twin)
            return
        for address in mine:
            self.new_addresses[address] = item.outlook_id
        self.actions.append(
            Action(
                ActionKind.CREATE_WORKBOOKS,
                why,
                outlook_id=item.outlook_id,
                workbooks_type=self.workbooks_type,
                change_key=item.change_key,
                fields=dict(item.fields),
                stamp_outlook=True,
            )
        )

    def duplicate(
        self,
        item: OutlookItem,
        by: Literal["stamp", "reference", "email"],
        workbooks_id: int | None,
        holder: str,
    ) -> None:
        """Another item holds the record: never steal its link, never create a second record."""
        self.skip(f"duplicate_{by}")
        self.issues.append(
            Issue(
                "duplicate",
                item.outlook_id,
                dict(item.fields),
                by,
                workbooks_id=workbooks_id,
                workbooks_type=self.workbooks_type if workbooks_id is not None else "",
                linked_outlook_id=holder,
            )
        )

    def match(self, item: OutlookItem, candidates: Sequence[Candidate]) -> None:
        """A new shared item looked up by its addresses (``sync.core.identity.choose``)."""
        choice = identity.choose(candidates)
        if choice.verdict == Verdict.CREATE:
            has = bool(identity.addresses(item.fields, self.ident.slots))
            self.create(item, "new shared Outlook item" + ("" if has else " (no address)"))
            return
        if choice.verdict == Verdict.AMBIGUOUS:
            self.skip("ambiguous")
            self.issues.append(
                Issue("ambiguous", item.outlook_id, dict(item.fields), "email", choice.candidates)
            )
            return
        assert choice.candidate is not None
        found = choice.candidate
        holder = self.holder(found.workbooks_id)
        if holder is not None:
            self.duplicate(item, "email", found.workbooks_id, holder)
            return
        self.first_link(item, found)

    def first_link(self, item: OutlookItem, found: Candidate) -> None:
        """Pair an item with an existing record, never paired before: Workbooks' values stand,
        Outlook fills what Workbooks lacks, and the item is stamped.  A one-way run writes
        Workbooks only; what Outlook should get waits for the next two-way run (unsettled)."""
        merged, to_workbooks, to_outlook = identity.first_link(
            found.fields, item.fields, self.ident.slots
        )
        deferred = frozenset() if self.both else to_outlook
        for name in deferred:
            merged[name] = item.fields.get(name)  # what Outlook holds until it is written
        to_outlook -= deferred
        kind = ActionKind.UPDATE if to_workbooks or to_outlook else ActionKind.LINK
        self.hold(found.workbooks_id, item.outlook_id)
        self.actions.append(
            Action(
                kind,
                f"linked to the existing record holding {found.address or 'its address'}",
                outlook_id=item.outlook_id,
                workbooks_id=found.workbooks_id,
                workbooks_type=found.workbooks_type,
                lock_version=found.lock_version,
                change_key=item.change_key,
                fields=merged,
                to_workbooks=to_workbooks,
                to_outlook=to_outlook,
                stamp_outlook=True,
                unsettled=bool(deferred),
            )
        )

    def claimed(self, item: OutlookItem, wid: int, record: WorkbooksRecord | None) -> None:
        """An unlinked shared item that names its record (stamp or creation reference)."""
        holder = self.holder(wid)
        if holder is not None and holder != item.outlook_id:
            # A user's copy of a synced item keeps our stamp: it is not the record's item.
            self.duplicate(item, item.found_by, wid, holder)
            return
        self.rematch(item, wid, record)

    def rematch(self, item: OutlookItem, wid: int, record: WorkbooksRecord | None) -> None:
        """A stamped item we have no link for: pair it again, never create a duplicate.

        The stamp says the item was synced, so Workbooks is taken as the base: differences
        flow to Outlook (in a two-way run) rather than being guessed as Outlook edits.  The
        user shared it, so the record's scope does not matter; a deleted record gets nothing."""
        if record is not None and record.deleted:
            self.done_workbooks.add(wid)
            self.skip("stamped_record_deleted")
            return
        self.hold(wid, item.outlook_id)
        if record is None or not self.both:
            self.actions.append(
                Action(
                    ActionKind.LINK,
                    "re-matched by stamped Workbooks id",
                    outlook_id=item.outlook_id,
                    workbooks_id=wid,
                    workbooks_type=self.workbooks_type,
                    lock_version=record.lock_version if record else 0,
                    change_key=item.change_key,
                    fields=dict(item.fields),
                    unsettled=True,  # Workbooks' values reach Outlook at the next two-way run
                )
            )
            return
        changed = frozenset(k for k, v in record.fields.items() if item.fields.get(k) != v)
        kind = ActionKind.UPDATE if changed else ActionKind.LINK
        self.actions.append(
            Action(
                kind,
                "re-matched by stamped Workbooks id",
                outlook_id=item.outlook_id,
                workbooks_id=wid,
                workbooks_type=record.workbooks_type,
                lock_version=record.lock_version,
                change_key=item.change_key,
                fields=dict(record.fields),
                to_outlook=changed,
            )
        )

    def paired(self, link: Link, item: OutlookItem | None, record: WorkbooksRecord | None) -> None:
        self.done_workbooks.add(link.workbooks_id)
        if record is not None and self.ends(link, record):
            if self.both:
                self.workbooks_gone(link, record)
            else:
                self.skip("left_for_reconcile")
            return
        base = link.snapshot
        outlook = item.fields if item is not None else base
        workbooks = record.fields if record is not None else base
        result = merge(
            base,
            workbooks,
            outlook,
            policy=self.policy.conflict_policy,
            workbooks_modified=record.modified if record else None,
            outlook_modified=item.modified if item else None,
        )
        for c in result.conflicts:
            self.conflicts.append(RecordedConflict(link.outlook_id, link.workbooks_id, c))
        to_outlook = result.to_outlook if self.both else frozenset()
        merged = dict(result.merged)
        for name in result.to_outlook - to_outlook:
            # One-way run: Outlook does not get this Workbooks change yet, so the snapshot
            # keeps the old value and the next two-way run still sees it as a change.
            merged[name] = base.get(name)
        lock = record.lock_version if record is not None else link.workbooks_lock_version
        key = item.change_key if item is not None else link.outlook_change_key
        # A two-way run that read the record settles a pair a one-way run linked.
        unsettled = link.unsettled and not (self.both and record is not None)
        if result.to_workbooks or to_outlook:
            kind, why = ActionKind.UPDATE, "changed" if not result.conflicts else "merged"
        elif (
            lock != link.workbooks_lock_version
            or merged != dict(base)
            or unsettled != link.unsettled
        ):
            kind, why = ActionKind.LINK, "versions refreshed"
        else:
            self.skip("unchanged")
            return
        self.actions.append(
            Action(
                kind,
                why,
                outlook_id=link.outlook_id,
                workbooks_id=link.workbooks_id,
                workbooks_type=link.workbooks_type,
                lock_version=lock,
                change_key=key,
                fields=merged,
                to_workbooks=result.to_workbooks,
                to_outlook=to_outlook,
                created_by_service=link.created_by_service,
                previous=link,
                unsettled=unsettled,
            )
        )

    @staticmethod
    def ends(link: Link, record: WorkbooksRecord) -> bool:
        """Does the record's state end the pair?  Deleted, or out of the calendar window; out
        of scope only for items the service created (an item the user shared stays linked:
        the user's share is its scope)."""
        if record.deleted or not record.in_window:
            return True
        return not record.in_scope and link.created_by_service

    # ---- Workbooks side -----------------------------------------------------------------

    def record(self, record: WorkbooksRecord) -> None:
        if record.workbooks_id in self.done_workbooks:
            return
        self.done_workbooks.add(record.workbooks_id)
        link = self.links.by_workbooks.get(record.workbooks_id)
        removed = record.workbooks_id in self.ident.removed
        if link is not None:
            self.paired(link, None, record)
        elif record.deleted or not record.in_scope or not record.in_window:
            if removed and record.deleted:
                self.forget.append(record.workbooks_id)  # nothing left to keep out of Outlook
            self.skip("out_of_scope")
        elif removed:
            self.skip("removed_by_user")
        else:
            self.actions.append(
                Action(
                    ActionKind.CREATE_OUTLOOK,
                    "new Workbooks record in scope",
                    workbooks_id=record.workbooks_id,
                    workbooks_type=record.workbooks_type,
                    lock_version=record.lock_version,
                    fields=dict(record.fields),
                    created_by_service=True,
                )
            )

    def workbooks_gone(self, link: Link, record: WorkbooksRecord) -> None:
        if record.deleted:
            why = "deleted in Workbooks"
        elif not record.in_scope:
            why = "left the Workbooks scope"
        else:  # the calendar window is not a scope: never delete for it
            self.add(link, ActionKind.UNLINK, "left the calendar window")
            return
        kind = ActionKind.DELETE_OUTLOOK if link.created_by_service else ActionKind.UNLINK
        self.add(link, kind, why, lock_version=record.lock_version)

    def add(
        self,
        link: Link,
        kind: ActionKind,
        reason: str,
        *,
        lock_version: int | None = None,
        remember: RemovalHow | None = None,
    ) -> None:
        self.actions.append(
            Action(
                kind,
                reason,
                outlook_id=link.outlook_id,
                workbooks_id=link.workbooks_id,
                workbooks_type=link.workbooks_type,
                lock_version=link.workbooks_lock_version if lock_version is None else lock_version,
                change_key=link.outlook_change_key,
                fields=dict(link.snapshot),
                created_by_service=link.created_by_service,
                previous=link,
                remember=remember,
            )
        )

    def cleared(self) -> tuple[str, ...]:
        """Items with a recorded issue that this plan decided otherwise."""
        again = {i.outlook_id for i in self.issues}
        return tuple(o for o in sorted(self.seen) if o in self.ident.issues and o not in again)


def brake(actions: Iterable[Action], linked: int, policy: SyncPolicy) -> Brake | None:
    """Stop when deletes + changes of linked items exceed the configured share."""
    affected = sum(1 for a in actions if a.touches_existing)
    if linked <= 0 or affected < max(policy.mass_change_min_items, 1):
        return None
    share = affected / linked
    if share <= policy.mass_change_share:
        return None
    reason = (
        f"mass-change brake: this run would delete or change {affected} of {linked} "
        f"linked items ({share:.0%} > {policy.mass_change_share:.0%}); no change or "
        f"delete was written. Check the change, then run a manual sync with force=1 to "
        f"proceed."
    )
    return Brake(affected, linked, share, reason)


def plan(
    *,
    outlook_items: Iterable[OutlookItem] = (),
    outlook_removals: Iterable[OutlookRemoval] = (),
    workbooks_records: Iterable[WorkbooksRecord] = (),
    links: LinkIndex,
    policy: SyncPolicy,
    direction: Direction,
    workbooks_type: str,
    force: bool = False,
    linked: int | None = None,
    ident: Identity | None = None,
) -> Plan:
    """Decide what to write.

    In a one-way (Outlook -> Workbooks) run, ``workbooks_records`` only serve the pairs whose
    Outlook item changed (fresh versions after a stale write): their Workbooks changes are
    merged but not written to Outlook, and records without an Outlook change are ignored.

    The last occurrence of an id wins (delta pages may repeat an item); ``force`` skips the
    mass-change brake (an operator confirmed the change), whose share is taken of ``linked``
    items (default: the links given; a run passes the count it started with).

    Order: removals, then linked items, then the others, so a pair that ends in this plan
    frees its record for another item, and a linked item keeps its record against a copy."""
    planner = _Planner(links, policy, direction, workbooks_type, ident or Identity())
    records = {r.workbooks_id: r for r in workbooks_records}
    items = {i.outlook_id: i for i in outlook_items}
    removals = {r.outlook_id: r for r in outlook_removals if r.outlook_id not in items}
    for gone in removals.values():
        planner.removal(gone, records)
    ordered = sorted(items.values(), key=lambda i: i.outlook_id not in links.by_outlook)
    for item in ordered:
        planner.item(item, records)
    if direction == Direction.BOTH:
        for record in records.values():
            planner.record(record)
    # A removal whose record another item of this plan took up is not one to remember.
    actions = [
        replace(a, remember=None) if a.remember and a.workbooks_id in planner.holders else a
        for a in planner.actions
    ]
    base = len(links) if linked is None else linked
    stop = None if force else brake(actions, base, policy)
    return Plan(
        tuple(actions),
        tuple(planner.conflicts),
        stop,
        dict(planner.skipped),
        tuple(planner.issues),
        planner.cleared(),
        tuple(planner.forget),
    )
