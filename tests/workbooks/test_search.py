"""Finding a record to attach an email to, against the Workbooks sandbox over HTTP."""

from __future__ import annotations

import pytest

from devkit.sandbox.workbooks import RunningSandbox, SandboxConfig, running_sandbox
from devkit.sandbox.workbooks.control import seed
from sync.core.email_linking import CASE, LEAD, OPPORTUNITY, ORGANISATION, PERSON, RecordRef
from sync.core.errors import NotFound
from sync.workbooks import WorkbooksClient
from sync.workbooks.search import lookup, search


def _seed(sandbox: RunningSandbox) -> dict[str, int]:
    state = sandbox.state
    ids = {
        "person": seed(
            state,
            "crm/people",
            [{"name": "Pat Fabrikam", "main_location[email]": "pat@fabrikam.example"}],
        )[0]["id"],
        "other": seed(state, "crm/people", [{"name": "Sam Northwind"}])[0]["id"],
        "org": seed(state, "crm/organisations", [{"name": "Fabrikam Ltd"}])[0]["id"],
        "case": seed(state, "crm/cases", [{"name": "Fabrikam printer jam"}])[0]["id"],
        "lead": seed(state, "crm/sales_leads", [{"person_lead_party[name]": "Lee Fabrikam"}])[0][
            "id"
        ],
        "opp": seed(state, "crm/opportunities", [{"description": "Fabrikam renewal 2027"}])[0][
            "id"
        ],
    }
    return {k: int(v) for k, v in ids.items()}


async def test_a_name_finds_every_kind_of_record_that_contains_it(
    sandbox: RunningSandbox, client: WorkbooksClient
) -> None:
    ids = _seed(sandbox)
    result = await search(client, "fabrikam")
    found = {(f.ref.record_type, f.ref.record_id): f for f in result.found}
    assert set(found) == {
        (PERSON, ids["person"]),
        (ORGANISATION, ids["org"]),
        (CASE, ids["case"]),
        (LEAD, ids["lead"]),
        (OPPORTUNITY, ids["opp"]),
    }
    person = found[(PERSON, ids["person"])]
    assert (person.kind, person.name, person.detail) == (
        "Person",
        "Pat Fabrikam",
        "pat@fabrikam.example",
    )
    assert person.object_ref.startswith("PERS-")
    assert found[(LEAD, ids["lead"])].name == "Lee Fabrikam"
    assert found[(OPPORTUNITY, ids["opp"])].name == "Fabrikam renewal 2027"
    assert result.skipped == [] and not result.by_reference


async def test_an_object_reference_finds_that_record_only(
    sandbox: RunningSandbox, client: WorkbooksClient
) -> None:
    ids = _seed(sandbox)
    result = await search(client, f" case-{ids['case']} ")
    assert result.by_reference
    assert [(f.ref, f.name) for f in result.found] == [
        (RecordRef(CASE, ids["case"]), "Fabrikam printer jam")
    ]
    missing = await search(client, "CASE-999999")
    assert missing.by_reference and missing.found == []


async def test_short_text_finds_nothing_and_lookup_names_what_is_missing(
    sandbox: RunningSandbox, client: WorkbooksClient
) -> None:
    _seed(sandbox)
    assert (await search(client, "f")).found == []
    with pytest.raises(NotFound, match="no Case with id 424242"):
        await lookup(client, RecordRef(CASE, 424242))


async def test_a_tenant_without_a_searched_column_skips_that_type_only() -> None:
    config = SandboxConfig(sim_controls=True)
    async with running_sandbox(config) as sandbox:
        from pydantic import SecretStr

        from sync.workbooks import WorkbooksIdentity
        from tests.workbooks.conftest import ANN_KEY, FAST

        # This tenant's opportunities have no description column: strict attribute checking
        # answers a search on it with a failure.
        columns = sandbox.state.types["crm/opportunities"].columns
        assert isinstance(columns, dict)
        columns.pop("description")
        seed(sandbox.state, "crm/cases", [{"name": "Northwind outage"}])
        identity = WorkbooksIdentity(sandbox.base_url, SecretStr(ANN_KEY), "ann@example.com")
        async with WorkbooksClient(identity, FAST) as client:
            result = await search(client, "northwind")
    assert [f.name for f in result.found] == ["Northwind outage"]
    assert len(result.skipped) == 1 and result.skipped[0].startswith("Opportunity: ")
