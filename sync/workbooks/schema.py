"""Every Workbooks class, endpoint and column the service reads or writes, declared once
(workbooks-api.md §4), and the named checks made of them.

The declarations (``DECLARED``) say what the service relies on and how sure we are of it:
``inferred`` marks the [INF] points no public source confirms; ``required`` the columns without
which a record type cannot be synced at all; ``canonical`` the field a two-way field map
(``sync.core.mapping``) carries in a column.  The field maps name their columns themselves
(the pure core cannot import this edge); tests/workbooks/test_schema.py holds them to these
declarations, and ``sync.workbooks.records.TenantColumns`` refuses to write an undeclared one.

``sync.workbooks.tenant`` checks the declarations against the tenant's ``metadata/types`` and
settles what the service does there; ``sync.workbooks.metadata`` reads the metadata.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sync.core.checks import Check
from sync.core.email_linking import CASE, LEAD, OPPORTUNITY, ORGANISATION, PERSON
from sync.core.errors import InvalidRequest
from sync.core.mapping.activities import MEETING_TYPE, TASK_TYPE

from . import errors

PARTY_LOCATION = "Private::Crm::PartyLocation"
EMAIL = "Private::Email::Email"  # [INF] §8 q2: the class name is not confirmed
LINK_TARGETS = (PERSON, LEAD, ORGANISATION, CASE, OPPORTUNITY)  # the Email tab's records [KB]

# ====================================================================== declarations


@dataclass(frozen=True)
class Col:
    """One column the service uses on one record type."""

    name: str
    filter: bool = False  # the service filters on it
    write: bool = False  # the service writes it
    required: bool = False  # without it the record type cannot be synced at all
    inferred: bool = False  # [INF]: no public source confirms it
    canonical: str = ""  # the canonical field it carries in a two-way field map
    verify: bool = True  # False: documented on every record (§3.9); not looked up


@dataclass(frozen=True)
class Decl:
    """A record type: its endpoint, its class and the columns the service uses on it."""

    key: str
    endpoint: str
    class_name: str
    title: str
    columns: tuple[Col, ...]
    class_inferred: bool = False

    def column(self, name: str) -> Col | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _base(*extra: Col) -> tuple[Col, ...]:
    """Columns every record has [DOC] §2.6, §2.7, §3.9; only their presence is assumed."""
    return (
        Col("id", filter=True, required=True, verify=False),
        Col("lock_version", filter=True, required=True, verify=False),
        Col("updated_at", filter=True, required=True, verify=False),
        Col("is_deleted", filter=True, required=True, verify=False),
        *extra,
    )


def _two_way(*extra: Col) -> tuple[Col, ...]:
    """A record type synced both ways: found again by reference, scoped by queue or watch."""
    return _base(
        Col("created_through_reference", filter=True, write=True, required=True),
        Col("assigned_to", filter=True, write=True, required=True),
        # [INF] §2.8, §8 q6: whether ``watched`` can be filtered on.  Without it "My People"
        # is only what is assigned to my queues.
        Col("watched", filter=True, inferred=True),
        *extra,
    )


def _location(prefix: str, names: Iterable[str], canonical: Mapping[str, str]) -> list[Col]:
    return [Col(f"{prefix}[{n}]", write=True, canonical=canonical.get(n, "")) for n in names]


PEOPLE = Decl(
    "people",
    "crm/people",
    PERSON,
    "People",
    _two_way(
        Col("name", write=True, required=True, canonical="display_name"),
        Col("person_first_name", write=True, canonical="first_name"),
        Col("person_middle_name", write=True, canonical="middle_name"),
        Col("person_last_name", write=True, canonical="last_name"),
        Col("person_job_title", write=True, canonical="job_title"),
        # [EX][OBS] read; that a write sets the employer is [INF] (§8 q10).
        Col("employer_name", write=True, inferred=True, canonical="company"),
        Col("main_location[email]", filter=True, write=True, required=True, canonical="email"),
        *_location(
            "main_location",
            (
                "alternate_email",
                "telephone",
                "alternate_telephone",
                "mobile",
                "street_address",
                "town",
                "county_province_state",
                "postcode",
                "country",
            ),
            {
                "alternate_email": "email2",
                "telephone": "phone",
                "alternate_telephone": "phone2",
                "mobile": "mobile",
                "street_address": "street",
                "town": "city",
                "county_province_state": "state",
                "postcode": "postcode",
                "country": "country",
            },
        ),
        *_location(
            "home_location", ("email", "telephone"), {"email": "email3", "telephone": "home_phone"}
        ),
    ),
)
CONTACT_DETAILS = Decl(
    "party_locations",
    "crm/party_locations",
    PARTY_LOCATION,
    "Contact Details",
    _base(
        Col("party_id", required=True),
        Col("email", filter=True, required=True),
        Col("alternate_email", filter=True, required=True),
        # [INF] §4.3: the owner's class and id, readable through a ``party`` association.
        Col("party[type]", inferred=True),
        Col("party[id]", inferred=True),
    ),
)
SALES_LEADS = Decl(
    "sales_leads",
    "crm/sales_leads",
    LEAD,
    "Sales Leads",
    _base(
        # The lead's email columns are a setting (lead_email_fields, [INF] §4.4, §8 q8),
        # added per tenant by ``lead_columns``.  The party ids serve the owner look-up of
        # Contact Details rows when ``party[...]`` is not readable.
        Col("person_lead_party_id", filter=True, inferred=True),
        Col("org_lead_party_id", filter=True, inferred=True),
    ),
)
ORGANISATIONS = Decl("organisations", "crm/organisations", ORGANISATION, "Organisations", _base())
CASES = Decl("cases", "crm/cases", CASE, "Cases", _base())
OPPORTUNITIES = Decl("opportunities", "crm/opportunities", OPPORTUNITY, "Opportunities", _base())
_ACTIVITY = (
    Col("name", write=True, required=True),
    Col("activity_type", write=True),
    Col("activity_status", write=True),
    Col("description", write=True),
)
TASKS = Decl(
    "tasks",
    "activity/tasks",
    TASK_TYPE,
    "Tasks",
    _two_way(
        *_ACTIVITY,
        Col("activity_priority", write=True),
        Col("due", write=True),
        Col("completed", write=True),
    ),
)
MEETINGS = Decl(
    "meetings",
    "activity/meetings",
    MEETING_TYPE,
    "Meetings",
    _two_way(
        *_ACTIVITY,
        # [INF] §4.7, §8 q9: the meeting location's column; a setting names the tenant's own.
        Col("location", write=True, inferred=True, canonical="location"),
        Col("all_day", write=True),
        Col("start", write=True),
        Col("finish", write=True),
        Col("duration"),
    ),
    class_inferred=True,  # §8 q12
)
EMAILS = Decl(
    "emails",
    "email/emails",
    EMAIL,
    "Emails",
    _base(
        Col("created_through_reference", filter=True, write=True, required=True),
        Col("from_address", write=True, required=True),
        Col("to_addresses", write=True, required=True),
        Col("cc_addresses", write=True, required=True),
        Col("bcc_addresses", write=True, required=True),
        Col("subject", write=True, required=True),
        Col("status", write=True, required=True),
        Col("rfc822", write=True, required=True),
        Col("synopsis", write=True, inferred=True),  # [OBS] seen commented out only
    ),
    class_inferred=True,
)
DECLARED: tuple[Decl, ...] = (
    PEOPLE,
    CONTACT_DETAILS,
    SALES_LEADS,
    ORGANISATIONS,
    CASES,
    OPPORTUNITIES,
    TASKS,
    MEETINGS,
    EMAILS,
)
ENDPOINT_OF_CLASS: Mapping[str, str] = {d.class_name: d.endpoint for d in DECLARED}

# [INF] §4.4, §8 q8: the candidates the API notes name for a lead's address.
LEAD_EMAIL_CANDIDATES = (
    "person_lead_party[main_location[email]]",
    "org_lead_party[main_location[email]]",
    "person_lead_party[email]",
)
# [INF] Stored, non-sending email statuses worth preferring to DRAFT when the tenant's picklist
# has one (a user can send a DRAFT from the Workbooks UI; only SEND sends, §4.10).
STORED_STATUSES = ("FILED", "STORED", "ARCHIVED", "LOGGED", "IMPORTED")
DRAFT, SEND = "DRAFT", "SEND"

# ====================================================================== checks
# A check (``sync.core.checks.Check``) names what the tenant lacks, with the fix.


class SchemaMismatch(InvalidRequest):
    """The tenant lacks something a record type needs (a declaration that is required)."""

    def __init__(self, check: Check) -> None:
        super().__init__(f"{check.message}; fix: {check.fix}", source=errors.SOURCE)
        self.check = check
