"""The identity rows of a (mailbox, stream) against Azurite: removals and issues beside links."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sync.core.state_models import IdentityIssue, Link, MatchCandidate, Removal
from sync.state.store import StateStore

MB, STREAM, PERSON = "ann@example.com", "contacts", "Private::Crm::Person"


def removal(n: int, **more: Any) -> Removal:
    return Removal(mailbox=MB, stream=STREAM, workbooks_type=PERSON, workbooks_id=n, **more)


def issue(oid: str, kind: str = "ambiguous", **more: Any) -> IdentityIssue:
    return IdentityIssue(mailbox=MB, stream=STREAM, outlook_id=oid, kind=kind, **more)


async def test_removals_and_issues_live_beside_the_links_without_mixing(store: Any) -> None:
    s: StateStore = store
    link = Link(
        mailbox=MB, stream=STREAM, outlook_id="AA/b+c==", workbooks_type=PERSON, workbooks_id=1
    )
    await s.links.put(link)
    candidates = [MatchCandidate(workbooks_type=PERSON, workbooks_id=n) for n in (5, 6)]
    await s.identity.save(
        MB,
        STREAM,
        removals=[removal(2, outlook_id="AA/x", title="Hank", how="unshared")],
        issues=[
            issue("AA/y?#", candidates=candidates),
            issue(
                "AA/z",
                "duplicate",
                workbooks_type=PERSON,
                workbooks_id=1,
                linked_outlook_id="AA/b+c==",
            ),
        ],
    )
    assert [x.outlook_id async for x in s.links.list(MB, STREAM)] == ["AA/b+c=="]
    (r,) = await s.identity.removals(MB, STREAM)
    assert (r.workbooks_id, r.title, r.how) == (2, "Hank", "unshared")
    found = {i.outlook_id: i for i in await s.identity.issues(MB, STREAM)}
    assert [c.workbooks_id for c in found["AA/y?#"].candidates] == [5, 6]
    assert found["AA/z"].linked_outlook_id == "AA/b+c=="
    assert await s.identity.counts(MB, STREAM) == {"ambiguous": 1, "duplicate": 1, "removed": 1}
    assert await s.identity.counts(MB, "todo") == {"ambiguous": 0, "duplicate": 0, "removed": 0}
    # A run reads both at once: the same rows, one range read, no link among them.
    apart = (await s.identity.removals(MB, STREAM), await s.identity.issues(MB, STREAM))
    ranges: list[str] = []
    real_prefix = s.identity._t.prefix

    def counted(pk: str, prefix: str) -> Any:
        ranges.append(prefix)
        return real_prefix(pk, prefix)

    s.identity._t.prefix = counted  # type: ignore[method-assign,assignment]
    try:
        assert await s.identity.load(MB, STREAM) == apart
        assert ranges == ["x:"]
        assert await s.identity.load(MB, "todo") == ([], [])
    finally:
        del s.identity._t.prefix
    # saving again replaces; dropping missing rows is fine
    await s.identity.save(MB, STREAM, issues=[issue("AA/y?#", "duplicate")])
    assert await s.identity.counts(MB, STREAM) == {"ambiguous": 0, "duplicate": 2, "removed": 1}
    await s.identity.drop(MB, STREAM, removals=[removal(2), removal(99)], issues=["AA/z", "nope"])
    assert await s.identity.counts(MB, STREAM) == {"ambiguous": 0, "duplicate": 1, "removed": 0}
    assert await s.links.count(MB, STREAM) == 1


async def test_many_removals_are_written_in_transactions_and_cleared_at_once(store: Any) -> None:
    s: StateStore = store
    await s.identity.save(MB, STREAM, removals=[removal(n) for n in range(250)])
    assert len(await s.identity.removals(MB, STREAM)) == 250
    assert await s.identity.clear_removals(MB, STREAM) == 250
    assert await s.identity.removals(MB, STREAM) == []


def test_an_issue_keeps_a_bounded_list_of_candidates() -> None:
    many = [MatchCandidate(workbooks_type=PERSON, workbooks_id=n) for n in range(21)]
    with pytest.raises(ValidationError):
        issue("x", candidates=many)
