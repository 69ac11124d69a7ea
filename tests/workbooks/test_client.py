"""The client against the sandbox over real HTTP: transport, paging, watermarks, batches and
domain queries."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from pydantic import SecretStr

from devkit.sandbox.workbooks import SandboxConfig, running_sandbox
from devkit.sandbox.workbooks.control import edit_as, expire_sessions, seed, set_clock, set_watched
from sync.core.email_linking import PERSON, RecordRef
from sync.core.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    ReauthRequired,
    ResyncRequired,
    RetryLater,
)
from sync.workbooks import (
    ClientConfig,
    Cond,
    Watermark,
    WorkbooksClient,
    WorkbooksIdentity,
    WriteOp,
    all_of,
    any_of,
    changed_since,
    iter_records,
    records,
    resolve_addresses,
    write_batch,
)
from sync.workbooks import writes as client_writes
from sync.workbooks.emails import (
    EmailLink,
    create_emails,
    emails_by_reference,
    link_emails,
    links_of,
    record_exists,
)
from sync.workbooks.tenant import tenant_schema
from sync.workbooks.writes import LOOKAHEAD_CHUNKS, batch_params

from .conftest import ANN_KEY, FAST
from .sandbox_support import seed_deleted_owners


def puts(client: WorkbooksClient, endpoint: str = "crm/people") -> int:
    return client.calls[f"PUT {endpoint}"]


async def test_login_gets_my_queues_and_redacts_key(client: WorkbooksClient):
    login = await client.ensure_login()
    assert login.my_queues["Private::Crm::PersonQueue"] == 2 and login.user_id == 29198
    assert ANN_KEY not in repr(client.identity) and ANN_KEY not in repr(client)
    assert login.session_id not in repr(login)


async def test_bad_api_key_is_reauth_required(sandbox):
    identity = WorkbooksIdentity(sandbox.base_url, SecretStr("wrong"), "x")
    async with WorkbooksClient(identity, FAST) as wb:
        with pytest.raises(ReauthRequired) as info:
            await wb.get("crm/people", [])
    assert "wrong" not in str(info.value) + info.value.detail


async def test_throttling_redirect_is_replayed_identically(client, sandbox):
    sandbox.state.faults.throttle_next = 3
    [result] = await write_batch(client, "crm/people", [WriteOp.create({"name": "Once"})])
    assert result.ok and result.id is not None
    assert puts(client) == 4  # three 302s, then the replay that was processed
    assert len(sandbox.state.tables["crm/people"]) == 1


async def test_throttling_gives_up_with_retry_later(client, sandbox):
    await client.ensure_login()
    sandbox.state.faults.throttle_next = 100
    with pytest.raises(RetryLater):
        await client.get("crm/people", [])
    assert client.calls["GET crm/people"] == client.config.throttle_max_attempts


async def test_session_expiry_triggers_one_relogin(client, sandbox):
    await client.ensure_login()
    first = client.login_info
    expire_sessions(sandbox.state)
    results = await asyncio.gather(*(client.get("crm/people", []) for _ in range(4)))
    assert all(r["success"] for r in results)
    assert client.login_info is not first
    assert sandbox.state.stats["POST login.api"] == 2  # concurrent 302s share one re-login


async def test_idle_expiry_on_sandbox_clock_relogs_in(client, sandbox):
    await client.get("crm/people", [])
    set_clock(sandbox.state, advance_seconds=9 * 3600)
    [result] = await write_batch(client, "crm/people", [WriteOp.create({"name": "Late"})])
    assert result.ok


async def test_rotated_session_cookie_is_adopted(sandbox):
    async with running_sandbox(SandboxConfig(rotate_session_every=1)) as rotating:
        identity = WorkbooksIdentity(rotating.base_url, SecretStr(ANN_KEY))
        async with WorkbooksClient(identity, FAST) as wb:
            await wb.get("crm/people", [])
            before = wb._cookie
            await wb.get("crm/people", [])
            assert wb._cookie != before
            rotating.state.sessions.pop(before or "")  # the old id is now dead
            await wb.get("crm/people", [])
            assert rotating.state.stats["POST login.api"] == 1


async def test_in_flight_cap_is_five(client, sandbox):
    await client.ensure_login()
    sandbox.state.faults.latency_ms = 100
    await asyncio.gather(*(client.get("crm/people", []) for _ in range(20)))
    assert sandbox.state.peak_in_flight == 5
    assert sandbox.state.stats["throttled"] == 0


async def test_job_slots_keep_clients_sharing_a_key_under_the_limit(client, sandbox):
    """Two clients with one key stand for two instances: alone, each keeps its own five in
    flight and together they are throttled; with a job's share each, they never are."""
    from sync.workbooks.client import job_slots

    other = WorkbooksClient(client.identity, FAST)
    await client.ensure_login()
    await other.ensure_login()
    sandbox.state.faults.latency_ms = 50

    async def job(wb: WorkbooksClient, share: int | None) -> None:
        reads = (wb.get("crm/people", []) for _ in range(10))
        if share is None:  # some may even fail after every replay: that is the harm shown
            await asyncio.gather(*reads, return_exceptions=True)
            return
        with job_slots(share):
            await asyncio.gather(*reads)

    try:
        await asyncio.gather(job(client, None), job(other, None))
        assert sandbox.state.stats["throttled"] > 0  # 10 in flight against a limit of 5
        sandbox.state.stats["throttled"] = 0
        sandbox.state.peak_in_flight = 0
        # five jobs (a mailbox's streams), one slot each, on two "instances"
        await asyncio.gather(*(job(client if i % 2 else other, 1) for i in range(5)))
        assert sandbox.state.stats["throttled"] == 0 and sandbox.state.peak_in_flight == 5
    finally:
        await other.close()


async def test_server_errors_translate(client, sandbox):
    await client.ensure_login()
    sandbox.state.faults.fail_next = [500]
    with pytest.raises(RetryLater):
        await client.get("crm/people", [])
    with pytest.raises(NotFound):
        await client.get("crm/no_such_things", [])
    with pytest.raises(InvalidRequest):
        await client.get("crm/people", [("_ff[]", "name"), ("_ft[]", "nblank"), ("_fc[]", "")])


async def test_iter_records_pages_with_start_and_limit(client, sandbox):
    seed(sandbox.state, "crm/organisations", [{"name": f"O{i}"} for i in range(250)])
    names = [r["name"] async for r in iter_records(client, "crm/organisations", ["name"])]
    assert names == [f"O{i}" for i in range(250)]
    assert client.calls["GET crm/organisations"] == 3


async def test_changed_since_same_second_paging_resume_and_deletes(client, sandbox):
    state = sandbox.state
    set_clock(state, freeze="2024-11-26T10:00:00Z")
    [early] = seed(state, "crm/people", [{"name": "early"}])
    set_clock(state, advance_seconds=5)
    ids = [p["id"] for p in seed(state, "crm/people", [{"name": f"s{i}"} for i in range(7)])]
    mark = Watermark()
    seen: list[int] = []
    async for row, latest in changed_since(client, "crm/people", mark, ["name"], page_size=3):
        seen.append(row["id"])
        mark = latest
        if len(seen) == 5:
            break  # the run dies mid-second; only the stored watermark survives
    stored = mark.to_json()
    assert seen == [early["id"], *ids[:4]]
    assert Watermark.from_json(stored).seen_ids == set(ids[:4])
    # Still the same second: a lower-id record changes, a seen record changes again, and an
    # unseen record is deleted.  None of them may be skipped; nothing else may repeat.
    edit_as(state, "crm/people", early["id"], {"name": "early-edited"})
    edit_as(state, "crm/people", ids[1], {"name": "s1-again"})
    lock = state.tables["crm/people"][ids[6]]["lock_version"]
    [gone] = await write_batch(client, "crm/people", [WriteOp.delete(ids[6], lock)])
    assert gone.ok
    resumed = [
        (r["id"], r["name"], r["is_deleted"])
        async for r, _ in changed_since(
            client, "crm/people", Watermark.from_json(stored), ["name"], page_size=3
        )
    ]
    assert resumed == [
        (early["id"], "early-edited", False),
        (ids[1], "s1-again", False),
        (ids[4], "s4", False),
        (ids[5], "s5", False),
        (ids[6], "s6", True),
    ]
    # Nothing new: an empty run, and one GET only.
    before = client.calls["GET crm/people"]
    final = mark
    async for _, latest in changed_since(
        client, "crm/people", Watermark.from_json(stored), ["name"], page_size=3
    ):
        final = latest
    after = [r async for r in changed_since(client, "crm/people", final, ["name"])]
    assert after == [] and client.calls["GET crm/people"] > before


async def test_changed_since_with_many_rows_in_one_second(client, sandbox):
    set_clock(sandbox.state, freeze="2024-11-26T10:00:00Z")
    seed(sandbox.state, "crm/people", [{"name": f"bulk{i}"} for i in range(250)])
    names = [
        r["name"]
        async for r, _ in changed_since(client, "crm/people", Watermark(), ["name"], page_size=100)
    ]
    assert names == [f"bulk{i}" for i in range(250)]


async def test_watermark_format_is_versioned():
    from datetime import UTC, datetime

    mark = Watermark().after({"id": 5, "lock_version": 2}, datetime(2024, 1, 1, tzinfo=UTC))
    assert Watermark.from_json(mark.to_json()) == mark
    with pytest.raises(ResyncRequired):
        Watermark.from_json('{"v": 99}')


async def test_batch_writer_chunks_and_keeps_order(client, sandbox):
    ops = [
        WriteOp.create({"name": f"P{i}", "main_location[email]": f"p{i}@x.com"}) for i in range(250)
    ]
    results = await write_batch(client, "crm/people", ops)
    assert puts(client) == 3
    assert [r.values["name"] for r in results] == [f"P{i}" for i in range(250)]
    assert len({r.id for r in results}) == 250 and all(r.lock_version == 0 for r in results)


async def test_batch_writer_builds_a_bounded_number_of_chunks_ahead(client, sandbox, monkeypatch):
    """A few chunks more than the in-flight cap are built and wait for a slot; never more."""
    await client.ensure_login()
    sandbox.state.faults.latency_ms = 20
    built = done = ahead = 0

    def counting_params(ops):
        nonlocal built, ahead
        built += 1
        ahead = max(ahead, built - done)
        return batch_params(ops)

    put = client.put

    async def counting_put(endpoint, params):
        nonlocal done
        try:
            return await put(endpoint, params)
        finally:
            done += 1

    monkeypatch.setattr(client_writes, "batch_params", counting_params)
    monkeypatch.setattr(client, "put", counting_put)
    ops = [WriteOp.create({"name": f"P{i}"}) for i in range(1200)]
    results = await write_batch(client, "crm/people", ops)
    cap = client.config.max_concurrency
    assert all(r.ok for r in results) and built == done == puts(client) == 12
    assert ahead == cap + LOOKAHEAD_CHUNKS
    assert sandbox.state.peak_in_flight == cap and sandbox.state.stats["throttled"] == 0


async def test_create_replies_equal_the_rows_read_back(client, sandbox):
    """The sandbox builds a created row's reply without looking at every value; it must be
    the row exactly as a read returns it."""
    created = {
        "crm/people": WriteOp.create(
            {
                "name": "Ann",
                "main_location[email]": "ann@x.com",
                "home_location[town]": "Leeds",
                "no_email_soliciting": True,
                "person_job_title": None,
            }
        ),
        "crm/organisations": WriteOp.create({"name": "Org", "main_location[town]": "York"}),
        "crm/sales_leads": WriteOp.create({"person_lead_party[name]": "Lead"}),
    }
    for endpoint, op in created.items():
        [result] = await write_batch(client, endpoint, [op])
        body = await client.get(
            endpoint, [("_ff[]", "id"), ("_ft[]", "eq"), ("_fc[]", str(result.id))]
        )
        assert result.ok and body["data"] == [result.values], endpoint


async def test_stale_lock_version_is_a_typed_conflict_and_others_commit(client, sandbox):
    a, b, c = seed(sandbox.state, "crm/people", [{"name": n} for n in "ABC"])
    edit_as(sandbox.state, "crm/people", b["id"], {"name": "B by Bob"}, user_id=29199)
    results = await write_batch(
        client,
        "crm/people",
        [
            WriteOp.update(a["id"], 0, {"name": "A2"}),
            WriteOp.update(b["id"], 0, {"name": "B2"}),
            WriteOp.delete(c["id"], 0),
        ],
    )
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, Conflict)
    assert results[0].lock_version == 1 and results[0].values["name"] == "A2"
    assert sandbox.state.tables["crm/people"][c["id"]]["is_deleted"] is True


async def test_forced_conflict_and_partial_failure(client, sandbox):
    [a] = seed(sandbox.state, "crm/people", [{"name": "A"}])
    sandbox.state.faults.force_conflicts = 1
    results = await write_batch(
        client,
        "crm/people",
        [
            WriteOp.update(a["id"], 0, {"name": "A2"}),
            WriteOp.create({"name": None}),
            WriteOp.create({"name": "New"}),
            WriteOp.update(99999, 0, {"name": "ghost"}),
        ],
    )
    assert [type(r.error).__name__ for r in results] == [
        "Conflict",
        "InvalidRequest",
        "NoneType",
        "NotFound",
    ]
    assert results[1].errors == {"name": ["can't be blank"]}
    assert results[2].ok and results[2].values["object_ref"].startswith("PERS-")


async def test_refused_chunk_marks_every_object(sandbox):
    async with running_sandbox(SandboxConfig(batch_cap=10)) as capped:
        identity = WorkbooksIdentity(capped.base_url, SecretStr(ANN_KEY))
        async with WorkbooksClient(identity, FAST) as wb:
            results = await write_batch(
                wb, "crm/people", [WriteOp.create({"name": str(i)}) for i in range(12)]
            )
    assert all(isinstance(r.error, InvalidRequest) for r in results)
    with pytest.raises(InvalidRequest):
        await write_batch(wb, "crm/people", [WriteOp.delete(1, 0), WriteOp.delete(1, 0)])


async def test_mine_or_watched_scope_with_criteria(client, sandbox):
    state = sandbox.state
    mine = seed(
        state,
        "crm/people",
        [
            {"name": "Mine CEO", "person_job_title": "CEO"},
            {"name": "Mine Dev", "person_job_title": "Dev"},
        ],
    )
    theirs = seed(
        state,
        "crm/people",
        [
            {"name": "Bob's", "person_job_title": "CEO"},
            {"name": "Bob's watched", "person_job_title": "CEO"},
        ],
        user_id=29199,
    )
    set_watched(state, 29198, "crm/people", theirs[1]["id"])
    queues = await records.my_queues(client, records.PEOPLE, [])
    scope = records.mine_or_watched(queues)

    async def names(*criteria: Cond, mode: str = "and") -> list[str]:
        narrowed = all_of(*criteria) if mode == "and" else any_of(*criteria)
        where = all_of(scope, narrowed) if criteria else scope
        return [r["name"] async for r in iter_records(client, "crm/people", ["name"], where)]

    assert await names() == ["Mine CEO", "Mine Dev", "Bob's watched"]
    ceos = await names(Cond("person_job_title", "eq", "ceo"))
    assert ceos == ["Mine CEO", "Bob's watched"]
    either = await names(
        Cond("person_job_title", "eq", "Dev"), Cond("name", "bg", "Bob"), mode="or"
    )
    assert either == ["Mine Dev", "Bob's watched"]
    assert mine[0]["id"] < theirs[0]["id"]


async def test_resolve_addresses_through_every_field(client, sandbox):
    state = sandbox.state
    ann, _ = seed(
        state,
        "crm/people",
        [
            {"name": "Ann", "main_location[email]": "Ann@X.com"},
            {"name": "Other", "main_location[email]": "o@x.com"},
        ],
    )
    [org] = seed(
        state, "crm/organisations", [{"name": "Org", "main_location[email]": "info@org.com"}]
    )
    seed(
        state,
        "crm/party_locations",
        [
            {"party_id": ann["id"], "location_name": "Other", "alternate_email": "ann.alt@y.com"},
            {"party_id": ann["id"], "location_name": "Other", "email": "odd,comma@y.com"},
        ],
    )
    [lead] = seed(
        state,
        "crm/sales_leads",
        [
            {
                "person_lead_party[name]": "Lee",
                "person_lead_party[main_location[email]]": "lee@z.com",
            }
        ],
    )
    lead_party = state.tables["crm/sales_leads"][lead["id"]]["person_lead_party_id"]
    seed(state, "crm/party_locations", [{"party_id": lead_party, "email": "lee.work@z.com"}])
    await tenant_schema(client)  # read once per client (its cost: test_schema.py)
    client.calls.clear()
    found = await resolve_addresses(
        client,
        [
            "ann@x.com",
            "ANN.ALT@y.com",
            "lee@z.com",
            "lee.work@z.com",
            "info@org.com",
            "odd,comma@y.com",
            "nobody@n.com",
        ],
    )
    summary = {
        a: [(m.record_type.split("::")[-1], m.record_id, m.field) for m in ms]
        for a, ms in found.items()
    }
    assert summary == {
        "ann@x.com": [("Person", ann["id"], "main_location[email]")],
        "ann.alt@y.com": [("Person", ann["id"], "party_locations.alternate_email")],
        "lee@z.com": [("SalesLead", lead["id"], "person_lead_party[main_location[email]]")],
        "lee.work@z.com": [("SalesLead", lead["id"], "party_locations.email")],
        "info@org.com": [("Organisation", org["id"], "party_locations.email")],
        "odd,comma@y.com": [("Person", ann["id"], "party_locations.email")],
        "nobody@n.com": [],
    }
    # Contact Details, then People and Sales Leads, which also confirm that the People and
    # Leads owning Contact Details exist (an Organisation is not linked by address: unread).
    gets = {k: n for k, n in client.calls.items() if k.startswith("GET")}
    assert gets == {"GET crm/party_locations": 1, "GET crm/people": 1, "GET crm/sales_leads": 1}


async def test_contact_details_of_deleted_records_match_nothing(client, sandbox):
    """Workbooks may still list the Contact Details of a deleted record [INF] (the sandbox
    does): an address held only there matches nothing, so the email is not linked to a record
    nobody sees and the address waits for a live one."""
    rows = seed_deleted_owners(sandbox.state)
    found = await resolve_addresses(
        client,
        [
            "live@x.com",
            "gone@x.com",
            "gone.alt@y.com",
            "shared@y.com",
            "o@x.com",
            "l@x.com",
            "k@x.com",
            "lead.work@y.com",
        ],
    )
    summary = {
        a: [(m.record_type.split("::")[-1], m.record_id) for m in ms] for a, ms in found.items()
    }
    assert summary == {
        "live@x.com": [("Person", rows["live"]["id"])],
        "gone@x.com": [],
        "gone.alt@y.com": [],
        "shared@y.com": [("Person", rows["live"]["id"])],
        # not linked by address: not confirmed
        "o@x.com": [("Organisation", rows["org"]["id"])],
        "l@x.com": [],
        "k@x.com": [("SalesLead", rows["kept"]["id"])],
        "lead.work@y.com": [],
    }


async def test_resolve_addresses_call_count_scales_with_in_list_size(sandbox):
    seed(
        sandbox.state,
        "crm/people",
        [{"name": f"P{i}", "main_location[email]": f"p{i}@x.com"} for i in range(50)],
    )
    identity = WorkbooksIdentity(sandbox.base_url, SecretStr(ANN_KEY))
    async with WorkbooksClient(identity, dataclasses.replace(FAST, in_list_size=20)) as wb:
        await tenant_schema(wb)
        wb.calls.clear()
        found = await resolve_addresses(wb, [f"p{i}@x.com" for i in range(50)])
        assert all(len(v) == 1 for v in found.values())
        assert sum(v for k, v in wb.calls.items() if k.startswith("GET")) == 3 * 3


async def test_emails_and_configurable_link_endpoint(sandbox):
    async with running_sandbox(SandboxConfig(email_link_path="email/related_items")) as custom:
        identity = WorkbooksIdentity(custom.base_url, SecretStr(ANN_KEY))
        config = dataclasses.replace(FAST, email_link_path="email/related_items")
        async with WorkbooksClient(identity, config) as wb:
            [person] = seed(custom.state, "crm/people", [{"name": "Ann"}])
            fields = {"subject": "Hello", "status": "DRAFT", "to_addresses": "ann@x.com"}
            [email] = await create_emails(wb, [{**fields, "created_through_reference": "olk:1"}])
            assert email.ok and email.values["status"] == "DRAFT"
            assert email.id is not None
            assert await emails_by_reference(wb, ["olk:1", "olk:2"]) == {"olk:1": email.id}
            [link] = await link_emails(wb, [EmailLink(email.id, PERSON, person["id"])])
            assert link.ok
            bad = await link_emails(wb, [EmailLink(email.id, "", 0)])
            assert isinstance(bad[0].error, InvalidRequest)
            rows = [
                r
                async for r in iter_records(wb, "email/related_items", ["email_id", "resource_id"])
            ]
            assert [(r["email_id"], r["resource_id"]) for r in rows] == [(email.id, person["id"])]
            # read back through the same configured path
            assert await links_of(wb, [email.id]) == {(email.id, f"{PERSON}:{person['id']}")}
            assert await record_exists(wb, RecordRef(PERSON, person["id"]))
            assert not await record_exists(wb, RecordRef(PERSON, person["id"] + 1000))
            with pytest.raises(InvalidRequest):
                await record_exists(wb, RecordRef("Private::Crm::Nothing", 1))


async def test_client_config_from_settings():
    from sync.settings import WorkbooksSettings

    config = ClientConfig.from_settings(WorkbooksSettings(batch_size=50), backoff_base_seconds=0)
    assert config.batch_size == 50 and config.backoff_base_seconds == 0
    assert Cond("a", "eq", "b").value == "b"


async def test_timeout_is_retry_later(sandbox):
    identity = WorkbooksIdentity(sandbox.base_url, SecretStr(ANN_KEY))
    async with WorkbooksClient(identity, dataclasses.replace(FAST, timeout_seconds=1.0)) as wb:
        await wb.ensure_login()
        sandbox.state.faults.latency_ms = 2500
        with pytest.raises(RetryLater):
            await wb.get("crm/people", [])
