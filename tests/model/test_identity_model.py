"""The model-based test of identity (docs/two-way-sync.md, rule 8): a Hypothesis rule-based
state machine over both sandboxes and Azurite (``tests.model.machine``).  ``make test`` runs
the ``ci`` profile (bounded); ``make soak`` many more examples and steps."""

from __future__ import annotations

import pytest

from tests.model.machine import IdentityMachine

pytestmark = pytest.mark.slow

TestIdentityModel = IdentityMachine.TestCase


def _check(machine: IdentityMachine) -> None:
    machine.no_record_twice_for_one_item_or_address()
    machine.one_outlook_item_per_record()
    machine.removals_are_never_undone()
    machine.each_email_once_and_each_link_once()


@pytest.mark.parametrize("nth", [1, 2])
def test_a_worker_dying_at_a_sent_emails_or_pending_entrys_steps_loses_and_doubles_nothing(
    nth: int,
) -> None:
    """Sequences the random examples reach only now and then: a death in a sent email's first
    or second transaction (its intent, then its Workbooks email and links), and in the removal
    of a pending entry once a record for its address appears; each run is delivered again."""
    from sync.core.jobs import JobKind, Stream
    from tests.model.machine import TOTALS

    machine = IdentityMachine()
    try:
        before = TOTALS["deaths"]
        machine.email_policy(auto=True)
        machine.workbooks_create(kind="contact", mine=True, address="p1@cust.test")
        machine.send_email(to=["p1@cust.test", "u1@far.test"], shared=True)
        machine.crash(point="email_write", stream=Stream.SENT, kind=JobKind.DIRTY, nth=nth)
        _check(machine)
        machine.record_for_earlier_recipient(index=1, mine=True)  # u1@far.test
        machine.crash(point="pending_remove", stream=Stream.PEOPLE, kind=JobKind.DIRTY, nth=1)
        _check(machine)
        assert TOTALS["deaths"] - before == 2  # both deaths happened
        machine.reconcile()  # every email linked to every record, nothing twice
        _check(machine)
    finally:
        machine.teardown()


@pytest.mark.parametrize("policy", ["unlink", "restore", "delete"])
def test_each_outlook_delete_policy_keeps_the_models_rules(policy: str) -> None:
    """What the random examples may choose, once each on purpose: a linked contact deleted in
    Outlook leaves its Person (``unlink``, ``restore``) or deletes it (``delete``, the Person
    being in the user's scope); only under ``restore`` does a resync bring the contact back,
    and then once."""
    from sync.core.jobs import JobKind, Stream

    machine = IdentityMachine()
    try:
        machine.outlook_delete_policy(policy)
        machine.workbooks_create(kind="contact", mine=True, address="p1@cust.test")
        machine.reconcile()
        (pid,) = machine.rows("crm/people")
        (item_id,) = machine.outlook("contact")
        machine.outlook_delete(kind="contact", index=0)
        machine.notification_run(Stream.CONTACTS)
        _check(machine)
        assert (pid in machine.rows("crm/people")) is (policy != "delete")
        machine.resync(Stream.CONTACTS)
        _check(machine)
        back = [i for i in machine.outlook("contact") if i != item_id]
        assert len(back) == (1 if policy == "restore" else 0), back
        machine.run(machine._job(Stream.CONTACTS, JobKind.RECONCILE))
        _check(machine)
    finally:
        machine.teardown()
