"""Identity before creation, the pure half: choosing a record by address, and the first merge."""

from __future__ import annotations

from sync.core.identity import Candidate, Verdict, addresses, choose, first_link

PERSON = "Private::Crm::Person"
EMAILS = ("email", "email2", "email3")


def cand(n: int, *, mine: bool = False, address: str = "a@x.test") -> Candidate:
    return Candidate(n, PERSON, 1, {"display_name": f"P{n}"}, mine, address, "main_location[email]")


def test_nothing_found_creates() -> None:
    assert choose([]).verdict == Verdict.CREATE


def test_one_record_links_even_when_found_through_several_addresses() -> None:
    c = choose([cand(1, address="a@x.test"), cand(1, address="b@x.test")])
    assert c.verdict == Verdict.LINK and c.candidate is not None and c.candidate.workbooks_id == 1


def test_the_users_scope_comes_first_then_the_whole_database() -> None:
    c = choose([cand(1), cand(2, mine=True), cand(3)])
    assert c.verdict == Verdict.LINK and c.candidate is not None and c.candidate.workbooks_id == 2
    assert {x.workbooks_id for x in c.candidates} == {1, 2, 3}
    # none in scope: the one record anywhere
    c = choose([cand(7)])
    assert c.verdict == Verdict.LINK and c.candidate is not None and c.candidate.workbooks_id == 7


def test_several_in_the_same_layer_are_ambiguous() -> None:
    c = choose([cand(1, mine=True), cand(2, mine=True), cand(3)])
    assert c.verdict == Verdict.AMBIGUOUS and c.candidate is None
    assert [x.workbooks_id for x in c.candidates] == [1, 2, 3]
    assert choose([cand(1), cand(2)]).verdict == Verdict.AMBIGUOUS


def test_addresses_are_trimmed_lower_cased_and_unique() -> None:
    fields = {"email": " Ann@X.test ", "email2": "ann@x.test", "email3": "b@y.test", "x": "z"}
    assert addresses(fields, EMAILS) == ["ann@x.test", "b@y.test"]
    assert addresses({"email": ""}, EMAILS) == []


def test_first_link_workbooks_values_stand_and_outlook_fills_the_gaps() -> None:
    workbooks = {"display_name": "Walter White", "job_title": "", "company": "Acme"}
    outlook = {"display_name": "Walt", "job_title": "Chemist", "company": ""}
    merged, to_wb, to_ol = first_link(workbooks, outlook)
    assert merged == {"display_name": "Walter White", "job_title": "Chemist", "company": "Acme"}
    assert to_wb == {"job_title"}  # Workbooks is only written where it had nothing
    assert to_ol == {"display_name", "company"}


def test_first_link_merges_addresses_as_a_list_without_losing_any() -> None:
    workbooks = {"email": "", "email2": "b@x.test", "email3": ""}
    outlook = {"email": "A@x.test", "email2": "c@x.test", "email3": ""}
    merged, to_wb, to_ol = first_link(workbooks, outlook, EMAILS)
    assert merged == {"email": "A@x.test", "email2": "b@x.test", "email3": "c@x.test"}
    assert to_wb == {"email", "email3"} and to_ol == {"email2", "email3"}
    # the same address in another case is not added twice
    merged, to_wb, _ = first_link({"email": "a@x.test"}, {"email": "A@X.TEST"}, ("email",))
    assert merged == {"email": "a@x.test"} and to_wb == frozenset()
