"""Per-mailbox schedules: stable offsets, evenly spread, cheap due-ness, wider work first."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from sync.core import schedule
from sync.core.schedule import Cadence
from sync.core.state_models import MailboxPolicy

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DEFAULT = MailboxPolicy()


def test_an_offset_is_stable_and_within_its_interval() -> None:
    a = schedule.offset_seconds("ann@example.com", 1800)
    assert a == schedule.offset_seconds("ann@example.com", 1800)
    assert a == schedule.offset_seconds(" Ann@Example.com ", 1800)  # the same mailbox
    assert 0 <= a < 1800
    assert schedule.offset_seconds("bob@example.com", 1800) != a
    # one offset for every interval, reduced: 30 minutes divides 2 hours, so they coincide
    assert schedule.offset_seconds("ann@example.com", 7200) % 1800 == a
    with pytest.raises(ValueError, match="positive"):
        schedule.offset_seconds("ann@example.com", 0)


def test_due_instants_repeat_every_interval_at_the_offset() -> None:
    found = schedule.due_instants("ann@example.com", 1800, T0, T0 + timedelta(hours=2))
    assert len(found) == 4
    assert [b - a for a, b in itertools.pairwise(found)] == [timedelta(minutes=30)] * 3
    assert all(schedule.is_due_at("ann@example.com", 1800, t) for t in found)
    assert not schedule.is_due_at("ann@example.com", 1800, found[0] + timedelta(seconds=1))
    assert schedule.next_due("ann@example.com", 1800, found[0]) == found[1]
    # windows partition time: each instant falls in exactly one of back-to-back windows
    minutes = [T0 + timedelta(minutes=m) for m in range(121)]
    per_window = [
        schedule.due_instants("ann@example.com", 1800, a, b) for a, b in itertools.pairwise(minutes)
    ]
    assert sorted(t for w in per_window for t in w) == found


def test_a_thousand_mailboxes_arrive_evenly() -> None:
    mailboxes = [(f"user{i}@contoso.example", DEFAULT) for i in range(1000)]
    due = schedule.due(mailboxes, Cadence.RECONCILE, T0, T0 + timedelta(hours=2))
    assert len(due) == 4000  # every mailbox, every 30 minutes
    per_minute = Counter(d.at.replace(second=0) for d in due)
    average = len(due) / 120
    assert max(per_minute.values()) <= 2 * average
    assert len(per_minute) == 120  # no minute without work


def test_a_wider_cadence_due_at_the_same_instant_takes_over() -> None:
    two_hours = (T0, T0 + timedelta(hours=2))
    # defaults: every push falls on a reconcile, every 6th To Do poll too
    assert schedule.due([("ann@example.com", DEFAULT)], Cadence.PUSH, *two_hours) == []
    polls = schedule.due([("ann@example.com", DEFAULT)], Cadence.TODO_POLL, *two_hours)
    assert len(polls) == 24 - 4
    # a push every hour with a reconcile every 4 hours: 3 of every 4 pushes are pushes
    own = MailboxPolicy(reconcile_interval_minutes=240, push_interval_minutes=60)
    four_hours = (T0, T0 + timedelta(hours=4))
    assert len(schedule.due([("ann@example.com", own)], Cadence.PUSH, *four_hours)) == 3
    # intervals that do not divide each other never coincide: nothing is taken over
    odd = MailboxPolicy(reconcile_interval_minutes=35, push_interval_minutes=120)
    assert len(schedule.due([("ann@example.com", odd)], Cadence.PUSH, *two_hours)) == 1


def test_each_mailbox_keeps_its_own_intervals() -> None:
    fast = MailboxPolicy(reconcile_interval_minutes=10)
    slow = MailboxPolicy(reconcile_interval_minutes=24 * 60)
    hour = (T0, T0 + timedelta(hours=1))
    got = Counter(
        d.mailbox
        for d in schedule.due(
            [("fast@example.com", fast), ("slow@example.com", slow)], Cadence.RECONCILE, *hour
        )
    )
    assert got["fast@example.com"] == 6
    assert got["slow@example.com"] <= 1


def test_policy_intervals_have_sane_minimums() -> None:
    assert (DEFAULT.reconcile_interval_minutes, DEFAULT.push_interval_minutes) == (30, 120)
    assert DEFAULT.todo_poll_minutes == 5
    for field, low in (
        ("reconcile_interval_minutes", 4),
        ("push_interval_minutes", 14),
        ("todo_poll_minutes", 1),
    ):
        with pytest.raises(ValidationError, match=field):
            MailboxPolicy.model_validate({field: low})
        with pytest.raises(ValidationError, match=field):
            MailboxPolicy.model_validate({field: 24 * 60 + 1})


def test_a_tick_owns_the_window_to_the_next_tick() -> None:
    start, end = schedule.tick_window("0 * * * * *", T0 + timedelta(seconds=17))
    assert (start, end) == (T0, T0 + timedelta(minutes=1))
    # fired late (past due): still its own window
    start, end = schedule.tick_window("20 * * * * *", T0 + timedelta(seconds=19))
    assert (start, end) == (T0 - timedelta(seconds=40), T0 + timedelta(seconds=20))
    assert schedule.tick_window("0 * * * * *", T0) == (T0, T0 + timedelta(minutes=1))


def test_busy_and_backlogged_streams_are_held_back_but_never_for_long() -> None:
    at, interval = T0, 1800

    def held(*, busy: bool = False, ago: float | None = None) -> bool:
        last = None if ago is None else at - timedelta(minutes=ago)
        return schedule.hold_back(busy=busy, last_success=last, interval_seconds=interval, at=at)

    assert not held()  # never ran: send
    assert not held(ago=29)  # the previous job ran: send
    assert held(ago=31) and held(ago=60)  # the previous job has not run yet: wait
    assert not held(ago=61)  # nothing for two intervals: send whatever happened
    assert held(busy=True) and held(busy=True, ago=5)  # running now
    assert not held(busy=True, ago=61)  # busy at every tick for too long: send anyway
