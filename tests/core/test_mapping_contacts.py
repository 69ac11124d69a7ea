"""People <-> contacts field map: both directions, round trips, stamps and sharing."""

from __future__ import annotations

from sync.core.graph_models import WORKBOOKS_ID_PROPERTY
from sync.core.mapping import contacts as c

ROW = {
    "id": 42,
    "lock_version": 3,
    "name": "Ann Example",
    "person_first_name": "Ann",
    "person_middle_name": "",
    "person_last_name": "Example",
    "person_job_title": "CTO ",
    "employer_name": "Acme Ltd",
    "main_location[email]": "ann@acme.test",
    "main_location[alternate_email]": "ann.private@mail.test",
    "home_location[email]": None,
    "main_location[telephone]": "+44 20 7946 0000",
    "main_location[alternate_telephone]": "",
    "main_location[mobile]": "+44 7700 900000",
    "home_location[telephone]": "",
    "main_location[street_address]": "1 High St\r\nFloor 2",
    "main_location[town]": "London",
    "main_location[county_province_state]": "",
    "main_location[postcode]": "EC1A 1AA",
    "main_location[country]": "United Kingdom",
}


def test_from_workbooks_canonical() -> None:
    f = c.from_workbooks(ROW)
    assert set(f) == set(c.FIELDS)
    assert f["display_name"] == "Ann Example"
    assert f["job_title"] == "CTO"
    assert f["email2"] == "ann.private@mail.test"
    assert f["email3"] == ""
    assert f["street"] == "1 High St\nFloor 2"


def test_graph_body_shape_and_round_trip() -> None:
    f = c.from_workbooks(ROW)
    body = c.to_graph(f)
    assert body["givenName"] == "Ann" and body["surname"] == "Example"
    assert body["emailAddresses"] == [
        {"name": "Ann Example", "address": "ann@acme.test"},
        {"name": "Ann Example", "address": "ann.private@mail.test"},
    ]
    assert body["businessPhones"] == ["+44 20 7946 0000"]
    assert body["mobilePhone"] == "+44 7700 900000"
    assert body["companyName"] == "Acme Ltd" and body["jobTitle"] == "CTO"
    assert body["businessAddress"] == {
        "street": "1 High St\nFloor 2",
        "city": "London",
        "state": "",
        "postalCode": "EC1A 1AA",
        "countryOrRegion": "United Kingdom",
    }
    assert c.from_graph(body) == f  # what we write reads back identical: no echo writes


def test_workbooks_round_trip() -> None:
    f = c.from_workbooks(ROW)
    assert c.from_workbooks(c.to_workbooks(f)) == f


def test_from_graph_three_emails_and_phones() -> None:
    item = {
        "id": "AAMk1",
        "givenName": "Bob",
        "surname": "Smith",
        "displayName": "Bob Smith",
        "emailAddresses": [
            {"address": "bob@a.test"},
            {"address": ""},
            {"address": "bob@b.test"},
            {"address": "bob@c.test"},
        ],
        "businessPhones": ["1", "2", "3"],
        "homePhones": ["9"],
        "mobilePhone": None,
    }
    f = c.from_graph(item)
    assert (f["email"], f["email2"], f["email3"]) == ("bob@a.test", "bob@b.test", "bob@c.test")
    assert (f["phone"], f["phone2"], f["home_phone"], f["mobile"]) == ("1", "2", "9", "")
    assert f["city"] == ""
    row = c.to_workbooks(f)
    assert row["home_location[email]"] == "bob@c.test"
    assert row["home_location[telephone]"] == "9"


def test_partial_update_sends_only_changed_groups_and_display_name() -> None:
    f = c.from_workbooks(ROW)
    body = c.to_graph(f, changed={"city"})
    assert set(body) == {"businessAddress", "displayName"}
    body = c.to_graph(f, changed={"email2"})
    assert set(body) == {"emailAddresses", "displayName"}
    assert c.to_workbooks(f, changed={"email2"}) == {
        "main_location[alternate_email]": "ann.private@mail.test"
    }


def test_display_name_falls_back() -> None:
    f = c.normalise({"first_name": "Zoe", "last_name": "Quinn"})
    assert c.to_graph(f)["displayName"] == "Zoe Quinn"
    assert c.to_workbooks(f)["name"] == "Zoe Quinn"
    assert c.default_display_name(c.normalise({"email": "x@y.test"})) == "x@y.test"


def test_stamp_and_sharing() -> None:
    body = c.stamp({"displayName": "A", "categories": ["Red"]}, 42, "Workbooks")
    assert body["categories"] == ["Red", "Workbooks"]
    assert c.stamped_id(body) == 42
    assert c.stamp(body, 42, "Workbooks")["categories"] == ["Red", "Workbooks"]
    assert c.is_shared({"categories": ["workbooks "]}, "Workbooks")
    assert not c.is_shared({"categories": ["Other"]}, "Workbooks")
    assert not c.is_shared({}, "Workbooks")
    bad = {"singleValueExtendedProperties": [{"id": WORKBOOKS_ID_PROPERTY.upper(), "value": "x"}]}
    assert c.stamped_id(bad) is None
    assert c.stamped_id({"singleValueExtendedProperties": [{"id": "other", "value": "1"}]}) is None
