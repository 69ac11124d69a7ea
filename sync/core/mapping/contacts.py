"""Workbooks Person <-> canonical contact fields <-> Graph contact JSON.

The field map (also in docs/field-map.md):

| canonical     | Workbooks (crm/people)               | Graph contact                     |
|---------------|--------------------------------------|-----------------------------------|
| display_name  | name                                 | displayName                       |
| first_name    | person_first_name                    | givenName                         |
| middle_name   | person_middle_name                   | middleName                        |
| last_name     | person_last_name                     | surname                           |
| job_title     | person_job_title                     | jobTitle                          |
| company       | employer_name                        | companyName                       |
| email         | main_location[email]                 | emailAddresses[0].address         |
| email2        | main_location[alternate_email]       | emailAddresses[1].address         |
| email3        | home_location[email]                 | emailAddresses[2].address         |
| phone         | main_location[telephone]             | businessPhones[0]                 |
| phone2        | main_location[alternate_telephone]   | businessPhones[1]                 |
| mobile        | main_location[mobile]                | mobilePhone                       |
| home_phone    | home_location[telephone]             | homePhones[0]                     |
| street        | main_location[street_address]        | businessAddress.street            |
| city          | main_location[town]                  | businessAddress.city              |
| state         | main_location[county_province_state] | businessAddress.state             |
| postcode      | main_location[postcode]              | businessAddress.postalCode        |
| country       | main_location[country]               | businessAddress.countryOrRegion   |

Outlook keeps three email slots and Workbooks a main and an alternate address per Contact
Details row, so the third Outlook address lives on the home location.  Further phones and
addresses Outlook may hold are left alone: a Graph update only sends the properties whose
canonical fields changed (grouped: all of ``emailAddresses`` if any email changed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sync.core.graph_models import WORKBOOKS_ID_PROPERTY

Fields = dict[str, Any]

PERSON_TYPE = "Private::Crm::Person"

# canonical -> Workbooks column (all plain strings)
WORKBOOKS_COLUMNS: dict[str, str] = {
    "display_name": "name",
    "first_name": "person_first_name",
    "middle_name": "person_middle_name",
    "last_name": "person_last_name",
    "job_title": "person_job_title",
    "company": "employer_name",
    "email": "main_location[email]",
    "email2": "main_location[alternate_email]",
    "email3": "home_location[email]",
    "phone": "main_location[telephone]",
    "phone2": "main_location[alternate_telephone]",
    "mobile": "main_location[mobile]",
    "home_phone": "home_location[telephone]",
    "street": "main_location[street_address]",
    "city": "main_location[town]",
    "state": "main_location[county_province_state]",
    "postcode": "main_location[postcode]",
    "country": "main_location[country]",
}
FIELDS: tuple[str, ...] = tuple(WORKBOOKS_COLUMNS)
EMAILS = ("email", "email2", "email3")
PHONES = ("phone", "phone2")
ADDRESS: dict[str, str] = {
    "street": "street",
    "city": "city",
    "state": "state",
    "postcode": "postalCode",
    "country": "countryOrRegion",
}
SIMPLE: dict[str, str] = {
    "display_name": "displayName",
    "first_name": "givenName",
    "middle_name": "middleName",
    "last_name": "surname",
    "job_title": "jobTitle",
    "company": "companyName",
    "mobile": "mobilePhone",
}
# Graph properties written for each canonical field (grouped properties share one entry).
GRAPH_PROPERTY: dict[str, str] = {
    **SIMPLE,
    **dict.fromkeys(EMAILS, "emailAddresses"),
    **dict.fromkeys(PHONES, "businessPhones"),
    "home_phone": "homePhones",
    **dict.fromkeys(ADDRESS, "businessAddress"),
}
# Columns a Workbooks read must select (scope and bookkeeping columns are added by the reader).
READ_COLUMNS: tuple[str, ...] = tuple(WORKBOOKS_COLUMNS.values())


def text(value: Any) -> str:
    """Canonical string: None -> '', surrounding whitespace dropped, CRLF -> LF."""
    if value is None:
        return ""
    return str(value).replace("\r\n", "\n").strip()


def normalise(fields: Mapping[str, Any]) -> Fields:
    """Every contact field present, as canonical text; emails compared case-insensitively
    are kept as written but trimmed."""
    return {name: text(fields.get(name)) for name in FIELDS}


# ----------------------------------------------------------------- Workbooks


def from_workbooks(row: Mapping[str, Any]) -> Fields:
    """A Workbooks person row -> canonical fields."""
    return normalise({name: row.get(column) for name, column in WORKBOOKS_COLUMNS.items()})


def to_workbooks(fields: Mapping[str, Any], changed: Iterable[str] | None = None) -> Fields:
    """Canonical fields -> Workbooks columns to write (only ``changed`` ones when given).

    Workbooks derives ``name`` from the parts in its UI; we send it explicitly so both sides
    agree on the display name."""
    names = FIELDS if changed is None else [n for n in FIELDS if n in set(changed)]
    row: Fields = {}
    for name in names:
        row[WORKBOOKS_COLUMNS[name]] = text(fields.get(name))
    if "name" in row and not row["name"]:
        row["name"] = default_display_name(fields)
    return row


def default_display_name(fields: Mapping[str, Any]) -> str:
    parts = [text(fields.get(n)) for n in ("first_name", "middle_name", "last_name")]
    name = " ".join(p for p in parts if p)
    return name or text(fields.get("email")) or text(fields.get("company")) or "(no name)"


# ----------------------------------------------------------------- Graph


def from_graph(contact: Mapping[str, Any]) -> Fields:
    """A Graph contact (camelCase wire JSON) -> canonical fields."""
    fields: Fields = {name: contact.get(prop) for name, prop in SIMPLE.items()}
    addresses = [text((e or {}).get("address")) for e in contact.get("emailAddresses") or []]
    addresses = [a for a in addresses if a]
    for i, name in enumerate(EMAILS):
        fields[name] = addresses[i] if i < len(addresses) else ""
    phones = [text(p) for p in contact.get("businessPhones") or [] if text(p)]
    for i, name in enumerate(PHONES):
        fields[name] = phones[i] if i < len(phones) else ""
    homes = [text(p) for p in contact.get("homePhones") or [] if text(p)]
    fields["home_phone"] = homes[0] if homes else ""
    address = contact.get("businessAddress") or {}
    for name, prop in ADDRESS.items():
        fields[name] = address.get(prop)
    return normalise(fields)


def to_graph(fields: Mapping[str, Any], changed: Iterable[str] | None = None) -> Fields:
    """Canonical fields -> Graph contact JSON: the whole contact, or the properties covering
    ``changed``.  ``displayName`` is always sent: Outlook regenerates it from other properties
    on update unless it is included (graph.md §4.2)."""
    wanted = set(FIELDS if changed is None else changed)
    props = {GRAPH_PROPERTY[n] for n in wanted if n in GRAPH_PROPERTY} | {"displayName"}
    body: Fields = {}
    for name, prop in SIMPLE.items():
        if prop in props:
            body[prop] = text(fields.get(name)) or None
    if not body.get("displayName"):
        body["displayName"] = default_display_name(fields)
    if "emailAddresses" in props:
        body["emailAddresses"] = _emails(fields)
    if "businessPhones" in props:
        body["businessPhones"] = [p for p in (text(fields.get(n)) for n in PHONES) if p]
    if "homePhones" in props:
        home = text(fields.get("home_phone"))
        body["homePhones"] = [home] if home else []
    if "businessAddress" in props:
        body["businessAddress"] = {p: text(fields.get(n)) for n, p in ADDRESS.items()}
    return body


def _emails(fields: Mapping[str, Any]) -> list[dict[str, str]]:
    name = text(fields.get("display_name")) or default_display_name(fields)
    return [
        {"name": name, "address": address}
        for address in (text(fields.get(n)) for n in EMAILS)
        if address
    ]


def stamp(body: Mapping[str, Any], workbooks_id: int, category: str) -> Fields:
    """The Workbooks id as our extended property, and the sharing category (graph.md §4.5)."""
    out = dict(body)
    out["singleValueExtendedProperties"] = [
        {"id": WORKBOOKS_ID_PROPERTY, "value": str(workbooks_id)}
    ]
    cats = list(out.get("categories") or [])
    if category and category not in cats:
        cats.append(category)
    out["categories"] = cats
    return out


def stamped_id(item: Mapping[str, Any]) -> int | None:
    """The Workbooks id stamped on a Graph contact or event (None if absent or not a number)."""
    for prop in item.get("singleValueExtendedProperties") or []:
        if str(prop.get("id", "")).lower() == WORKBOOKS_ID_PROPERTY.lower():
            try:
                return int(str(prop.get("value") or "").strip())
            except ValueError:
                return None
    return None


def is_shared(item: Mapping[str, Any], category: str) -> bool:
    """Outlook items sync only when they carry the sharing category (case-insensitive)."""
    wanted = category.strip().lower()
    return any(str(c).strip().lower() == wanted for c in item.get("categories") or [])
