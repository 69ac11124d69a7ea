"""The schema the sandbox serves: record types, their columns and associations, picklists and
webhook triggers (workbooks-api.md §2.9, §4, §7.24).

This is the one source of truth: reads, filters, sorts and writes check column names against
``RecordType.columns`` (under strict attribute checking), and ``metadata/types`` is rendered
from the same objects, so what the metadata says and what the sandbox does cannot disagree.
Every [INF] choice comes from ``SandboxConfig`` (``build_schema``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property

from .config import SandboxConfig

LOCATION_FIELDS = (
    "email",
    "alternate_email",
    "email_address_undeliverable",
    "telephone",
    "alternate_telephone",
    "mobile",
    "fax",
    "street_address",
    "town",
    "county_province_state",
    "postcode",
    "country",
)
VAR_DATE_FIELDS = ("start", "finish", "due", "started", "completed")
# How ``writes.coerce`` stores a value, by the attribute's innermost name.
BOOLEAN_FIELDS = frozenset(
    {
        "all_day",
        "no_email_soliciting",
        "no_phone_soliciting",
        "no_post_soliciting",
        "reminder_enabled",
        "email_address_undeliverable",
        "preferred_billing",
        "preferred_delivery",
        "enabled",
        "render_with_template_in_library",
        "email_opt_in",
    }
)
INTEGER_FIELDS = frozenset(
    {
        "assigned_to",
        "owner_id",
        "party_id",
        "employer_link",
        "resource_id",
        "email_id",
        "activity_id",
        "duration",
        "reminder_minutes",
        "contact_person_id",
        "primary_contact_id",
        "render_with_resource_id",
        "case_id",
        "display_order",
    }
)

PERSON = "Private::Crm::Person"
ORGANISATION = "Private::Crm::Organisation"
PARTY = "Private::Crm::Party"
PARTY_LOCATION = "Private::Crm::PartyLocation"
LEAD = "Private::Crm::SalesLead"
CASE = "Private::Crm::Case"
OPPORTUNITY = "Private::Crm::Opportunity"
TASK = "Private::Activity::Task"
MEETING = "Private::Activity::Meeting"
ACTIVITY = "Private::Activity::Activity"  # [INF] the class of the activities union
EMAIL = "Private::Email::Email"  # [INF] §8 q2
EMAIL_LINK = "Private::Email::EmailLink"  # [INF] placeholder (§4.10)
USER = "Private::User"
PICKLIST = "Private::Picklist"
PICKLIST_ENTRY = "Private::PicklistEntry"
WEBHOOK_SUBSCRIPTION = "Private::Automation::WebhookSubscription"  # [INF] class name
TRIGGER = "Private::Automation::Trigger"  # [INF] class name
# The records an email is filed against (§4.10 [KB]: the Email tab of these record types).
LINK_TARGETS = (PERSON, LEAD, ORGANISATION, CASE, OPPORTUNITY)
# Strategy ``association``: the parallel arrays written on email/emails (§2.5 array datatype,
# the same pattern as opportunity_contact_ids / opportunity_contact_roles [EX]).
LINKED_TYPES, LINKED_IDS = "linked_resource_types", "linked_resource_ids"

ACTIVITY_UNION = "activity/activities"
ACTIVITY_PARTS = ("activity/tasks", "activity/meetings")
WEBHOOK_PATH = "admin/triggers/webhook_subscriptions"
PICKLISTS_PATH = "admin/picklists"
PICKLIST_ENTRIES_PATH = "admin/picklist_entries"
QUEUE_ENDPOINTS = {
    "crm/person_queues": "Private::Crm::PersonQueue",
    "crm/organisation_queues": "Private::Crm::OrganisationQueue",
    "crm/sales_lead_queues": "Private::Crm::SalesLeadQueue",  # [INF] path
    "crm/case_queues": "Private::Crm::CaseQueue",
    "crm/opportunity_queues": "Private::Crm::OpportunityQueue",
    "activity/activity_queues": "Private::Activity::ActivityQueue",
}


# ---------------------------------------------------------------- triggers (§4.11)


@dataclass(frozen=True)
class Trigger:
    """A new-record trigger: its fixed id, the record type and the delivery's resource name."""

    trigger_id: int
    endpoint: str
    resource: str
    extension: bool = False  # True: a sandbox extension, not a documented Workbooks trigger


# [OBS] Pipedream: the ids are fixed in the system and cannot be listed through the API.
TRIGGERS = (
    Trigger(1, "crm/people", "person"),
    Trigger(3, "crm/organisations", "organisation"),
    Trigger(5, "crm/sales_leads", "sales_lead"),
    Trigger(7, "crm/cases", "case"),
    Trigger(9, "activity/tasks", "task"),
    Trigger(28, "activity/meetings", "meeting"),
    # SANDBOX EXTENSION: no public source names a trigger for new Contact Details rows.
    Trigger(9001, "crm/party_locations", "party_location", extension=True),
)
TRIGGERS_BY_ID = {t.trigger_id: t for t in TRIGGERS}
TRIGGERS_BY_ENDPOINT = {t.endpoint: t for t in TRIGGERS}


# ---------------------------------------------------------------- schema objects


@dataclass(frozen=True)
class Field:
    """One column as ``metadata/types`` describes it (README "Metadata")."""

    name: str
    datatype: str = "string"
    createable: bool = True
    updateable: bool = True
    filterable: bool = True
    nullable: bool = True
    required: bool = False
    picklist: str | None = None  # name of a ``Picklist``

    @property
    def read_only(self) -> bool:
        return not (self.createable or self.updateable)


@dataclass(frozen=True)
class Association:
    name: str
    datatype: str  # belongs_to | has_one | has_many
    class_names: tuple[str, ...]
    foreign_key_name: str | None = None
    polymorphic: bool = False
    through: str | None = None


@dataclass(frozen=True)
class Picklist:
    picklist_id: int
    name: str
    values: tuple[str, ...]
    restricted: bool  # True: a value outside the list is refused ("unrestricted": false)


@dataclass(frozen=True)
class RecordType:
    endpoint: str
    class_name: str
    sequence: str
    columns: Mapping[str, Field]
    associations: tuple[Association, ...] = ()
    required: tuple[str, ...] = ()
    queue_class: str | None = None
    locations: tuple[str, ...] = ()  # nested Contact Details rows (main_location, ...)
    nested_prefixes: tuple[str, ...] = ()  # flat nested keys stored as-is (lead parties)
    var_dates: tuple[str, ...] = ()
    writable: bool = True  # False: a read-only endpoint (queues, the activities union)
    base_class_name: str = "Private::Base"
    human_name: str = ""
    human_plural: str = ""
    described_by: str = "name"

    def __post_init__(self) -> None:
        """One list of required attributes: the ``required`` names and the columns marked so
        are the same set (creates check the former, metadata shows the latter)."""
        columns = dict(self.columns)
        names = [*self.required, *(n for n, c in columns.items() if c.required)]
        for name in names:
            columns[name] = replace(columns[name], required=True, nullable=False)
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "required", tuple(dict.fromkeys(names)))

    @cached_property
    def location_prefixes(self) -> tuple[str, ...]:
        """``main_location[``, ... : the flat keys written to a nested Contact Details row."""
        return tuple(f"{loc}[" for loc in self.locations)

    @cached_property
    def location_columns(self) -> tuple[tuple[str, dict[str, None], dict[str, str]], ...]:
        """Per location: its ``<location>_id`` key, its output columns all None (in order), and
        row field -> output column (``email`` -> ``main_location[email]``)."""
        return tuple(
            (
                f"{loc}_id",
                dict.fromkeys(f"{loc}[{f}]" for f in LOCATION_FIELDS),
                {f: f"{loc}[{f}]" for f in LOCATION_FIELDS},
            )
            for loc in self.locations
        )

    def knows(self, name: str) -> bool:
        """Whether a request may name this attribute under strict attribute checking."""
        return name in self.columns

    def filterable(self, name: str) -> bool:
        column = self.columns.get(name)
        return column is not None and column.filterable


@dataclass(frozen=True)
class Schema:
    """Everything the sandbox serves, built from one ``SandboxConfig``."""

    types: dict[str, RecordType]  # writable record types, by endpoint
    views: dict[str, RecordType]  # read-only endpoints: queue lists, the activities union
    picklists: dict[str, Picklist]  # by name
    link_type: RecordType  # the email-link records, served or not (strategy)
    link_strategy: str
    webhooks_allowed: bool

    def served(self, endpoint: str) -> RecordType | None:
        return self.types.get(endpoint) or self.views.get(endpoint)

    def all_types(self) -> list[RecordType]:
        return [*self.types.values(), *self.views.values()]

    @cached_property
    def by_class(self) -> dict[str, RecordType]:
        return {t.class_name: t for t in self.all_types()}

    @cached_property
    def _restricted(self) -> dict[str, dict[str, str]]:
        names = {n for n, p in self.picklists.items() if p.restricted}
        return {
            t.endpoint: {
                c.name: c.picklist
                for c in t.columns.values()
                if c.picklist is not None and c.picklist in names
            }
            for t in self.all_types()
        }

    def restricted_columns(self, rtype: RecordType) -> dict[str, str]:
        """Columns whose value must be one of a restricted picklist's entries."""
        return self._restricted.get(rtype.endpoint, {})

    def permitted(self, rtype: RecordType) -> bool:
        """Whether the caller may use this type at all (webhooks can be denied to the key)."""
        return self.webhooks_allowed or rtype.endpoint != WEBHOOK_PATH


# ---------------------------------------------------------------- column helpers


def _fields(names: Iterable[str], datatype: str = "string") -> list[Field]:
    return [Field(n, datatype) for n in names]


def _ro(names: Iterable[str], datatype: str = "string", *, filterable: bool = True) -> list[Field]:
    return [
        Field(n, datatype, createable=False, updateable=False, filterable=filterable) for n in names
    ]


def _columns(*groups: Iterable[Field]) -> dict[str, Field]:
    out: dict[str, Field] = {}
    for group in groups:
        for f in group:
            out[f.name] = f
    return out


def _common(config: SandboxConfig, *, queue: bool) -> list[Field]:
    """Attributes common to most records (§3.9), plus per-caller ``watched`` (§2.8)."""
    fields = [
        Field("id", "integer", createable=False, updateable=False, nullable=False),
        Field("lock_version", "integer", createable=False, updateable=False, nullable=False),
        *_ro(("created_at", "updated_at"), "datetime"),
        *_ro(("created_by", "updated_by"), "integer"),
        *_ro(
            (
                "created_by_user[person_name]",
                "created_by_user[login_name]",
                "updated_by_user[person_name]",
                "updated_by_user[login_name]",
                "owner[person_name]",
                "owner[login_name]",
                "type",
                "descriptor",
                "object_ref",
                "created_through",
            )
        ),
        Field("is_deleted", "boolean", createable=False, updateable=False, nullable=False),
        Field("name"),
        Field("created_through_reference"),
        Field("owner_id", "integer"),
        # [INF] §2.8, §8 q6: whether ``watched`` can be filtered on is a configuration choice.
        Field(
            "watched",
            "boolean",
            createable=False,
            updateable=False,
            filterable=config.watched_filterable,
        ),
    ]
    if queue:
        fields += [Field("assigned_to", "integer"), *_ro(("assigned_to_name",))]
    return fields


COMMON_ASSOCIATIONS = (
    Association("owner", "belongs_to", (USER,), "owner_id"),
    Association("created_by_user", "belongs_to", (USER,), "created_by"),
    Association("updated_by_user", "belongs_to", (USER,), "updated_by"),
)


def _location_fields(prefix: str) -> list[Field]:
    """``main_location[email]``, ... : nested Contact Details columns, written through."""
    return [
        Field(
            f"{prefix}[{f}]",
            "boolean" if f == "email_address_undeliverable" else "string",
        )
        for f in LOCATION_FIELDS
    ]


def _custom(config: SandboxConfig, endpoint: str) -> list[Field]:
    return [Field(n) for n in config.custom_fields.get(endpoint, ())]


def _var_dates(names: Iterable[str]) -> list[Field]:
    out = []
    for name in names:
        out += [
            Field(name, "var_date_time"),
            Field(f"{name}_date", "date"),
            Field(f"{name}_datetime", "datetime"),
        ]
    return out


# ---------------------------------------------------------------- picklists


def build_picklists(config: SandboxConfig) -> dict[str, Picklist]:
    lists = [
        ("Email Statuses", tuple(config.email_status_values), True),
        ("Activity Types", ("To-do", "Phone call", "Email", "Meeting"), False),
        ("Activity Statuses", ("New", "In progress", "Complete"), False),
        ("Activity Priorities", ("High", "Medium", "Low"), False),
        ("Location Names", ("Work", "Home", "Other"), False),
    ]
    return {
        name: Picklist(index + 1, name, values, restricted)
        for index, (name, values, restricted) in enumerate(lists)
    }


# ---------------------------------------------------------------- record types

PERSON_FIELDS = (
    "person_first_name",
    "person_middle_name",
    "person_last_name",
    "person_personal_title",
    "person_salutation",
    "person_suffix",
    "person_job_title",
    "person_job_role",
    "employer_name",
    "website",
    "skype_name",
    "twitter_url",
    "linkedin_url",
)
SOLICITING = ("no_email_soliciting", "no_phone_soliciting", "no_post_soliciting")
# [OBS] the person_lead_party[...] columns of a real tenant's full lead record (§4.4).
PERSON_LEAD_PARTY = (
    "name",
    "person_first_name",
    "person_middle_name",
    "person_last_name",
    "person_job_title",
    "person_job_role",
    "person_personal_title",
    "person_salutation",
    "person_suffix",
    "biography",
    "skype_name",
    "twitter_url",
    "facebook_url",
    "linkedin_url",
    "photo_url",
)
ORG_LEAD_PARTY = (
    "name",
    "industry",
    "website",
    "logo_url",
    "biography",
    "organisation_category",
    "organisation_annual_revenue",
    "organisation_num_employees",
)
ACTIVITY_PICKLIST_FIELDS = ("activity_type", "activity_status", "activity_priority")
ACTIVITY_PICKLISTS = {
    "activity_type": "Activity Types",
    "activity_status": "Activity Statuses",
    "activity_priority": "Activity Priorities",
}


def _people(config: SandboxConfig) -> RecordType:
    endpoint = "crm/people"
    return RecordType(
        endpoint,
        PERSON,
        "party",
        _columns(
            _common(config, queue=True),
            _fields(PERSON_FIELDS),
            [Field("employer_link", "has_one"), Field("biography", "text")],
            _fields(SOLICITING, "boolean"),
            _ro(("main_location_id", "home_location_id"), "integer"),
            _location_fields("main_location"),
            _location_fields("home_location"),
            _custom(config, endpoint),
        ),
        (
            *COMMON_ASSOCIATIONS,
            Association("main_location", "belongs_to", (PARTY_LOCATION,), "main_location_id"),
            Association("home_location", "belongs_to", (PARTY_LOCATION,), "home_location_id"),
            Association("employer", "belongs_to", (ORGANISATION,), "employer_link"),
            Association("party_locations", "has_many", (PARTY_LOCATION,), "party_id"),
        ),
        ("name",),
        "Private::Crm::PersonQueue",
        ("main_location", "home_location"),
        base_class_name=PARTY,
        human_name="Person",
        human_plural="People",
    )


def _organisations(config: SandboxConfig) -> RecordType:
    endpoint = "crm/organisations"
    return RecordType(
        endpoint,
        ORGANISATION,
        "party",
        _columns(
            _common(config, queue=True),
            _fields(
                (
                    "industry",
                    "website",
                    "organisation_category",
                    "organisation_company_number",
                    "organisation_vat_number",
                )
            ),
            [
                Field("organisation_annual_revenue", "currency"),
                Field("organisation_num_employees", "integer"),
            ],
            _fields(SOLICITING, "boolean"),
            _ro(("main_location_id",), "integer"),
            _location_fields("main_location"),
            _custom(config, endpoint),
        ),
        (
            *COMMON_ASSOCIATIONS,
            Association("main_location", "belongs_to", (PARTY_LOCATION,), "main_location_id"),
            Association("party_locations", "has_many", (PARTY_LOCATION,), "party_id"),
            Association("people", "has_many", (PERSON,), "employer_link"),
        ),
        ("name",),
        "Private::Crm::OrganisationQueue",
        ("main_location",),
        base_class_name=PARTY,
        human_name="Organisation",
        human_plural="Organisations",
    )


def _party_locations(config: SandboxConfig) -> RecordType:
    endpoint = "crm/party_locations"
    party: list[Field] = []
    associations = list(COMMON_ASSOCIATIONS)
    if config.party_columns:  # [INF] §4.3: the owning party, readable through the association
        party = _ro(("party[type]", "party[name]")) + _ro(("party[id]",), "integer")
        associations.append(Association("party", "belongs_to", (PARTY,), "party_id"))
    return RecordType(
        endpoint,
        PARTY_LOCATION,
        "party_location",
        _columns(
            _common(config, queue=False),
            [
                Field("party_id", "integer", required=True, nullable=False),
                Field("location_name", "picklist_data", picklist="Location Names"),
                Field("map_position"),
            ],
            _fields(
                [f for f in LOCATION_FIELDS if f != "email_address_undeliverable"],
            ),
            _fields(
                ("email_address_undeliverable", "preferred_billing", "preferred_delivery"),
                "boolean",
            ),
            party,
            _custom(config, endpoint),
        ),
        tuple(associations),
        ("party_id",),
        human_name="Contact Details",
        human_plural="Contact Details",
    )


def _lead_email_columns(config: SandboxConfig) -> list[Field]:
    """The configured lead email columns (§4.4, §8 q8), and the rest of a nested main
    location wherever the email is one."""
    fields: list[Field] = []
    for name in config.lead_email_fields:
        party = name[: name.index("[")]
        if name == f"{party}[main_location[email]]":
            fields += [
                Field(
                    f"{party}[main_location[{f}]]",
                    "boolean" if f == "email_address_undeliverable" else "string",
                )
                for f in LOCATION_FIELDS
                if f != "email"
            ]
        fields.append(Field(name))
    return fields


def _sales_leads(config: SandboxConfig) -> RecordType:
    endpoint = "crm/sales_leads"
    org_location = [
        Field(
            f"org_lead_party[main_location[{f}]]",
            "boolean" if f == "email_address_undeliverable" else "string",
        )
        for f in LOCATION_FIELDS
        if f != "email"  # the email column exists only when configured (below)
    ]
    return RecordType(
        endpoint,
        LEAD,
        "sales_lead",
        _columns(
            _common(config, queue=True),
            [
                Field("lead_source_type"),
                Field("sales_lead_status_type"),  # [OBS] the status field
                Field("sales_lead_rating_type"),
                Field("comment", "text"),
                Field("record_state", createable=False, updateable=False),
            ],
            _ro(("person_lead_party_id", "org_lead_party_id"), "integer"),
            [Field(f"person_lead_party[{f}]") for f in PERSON_LEAD_PARTY],
            [Field("person_lead_party[email_opt_in]", "boolean")],
            [Field(f"org_lead_party[{f}]") for f in ORG_LEAD_PARTY],
            [Field(f"org_lead_party[{f}]", "boolean") for f in SOLICITING],
            org_location,
            _lead_email_columns(config),
            _custom(config, endpoint),
        ),
        (
            *COMMON_ASSOCIATIONS,
            Association("person_lead_party", "belongs_to", (PERSON,), "person_lead_party_id"),
            Association("org_lead_party", "belongs_to", (ORGANISATION,), "org_lead_party_id"),
        ),
        (),
        "Private::Crm::SalesLeadQueue",
        nested_prefixes=("person_lead_party", "org_lead_party"),
        human_name="Sales Lead",
        human_plural="Sales Leads",
    )


def _cases(config: SandboxConfig) -> RecordType:
    endpoint = "crm/cases"
    return RecordType(
        endpoint,
        CASE,
        "case",
        _columns(
            _common(config, queue=True),
            [Field("problem", "text"), Field("contact_email"), Field("contact_phone_number")],
            _fields(
                (
                    "contact_person_id",
                    "case_status_id",
                    "case_priority_id",
                    "case_source_id",
                    "case_type_id",
                    "product_category_id",
                ),
                "integer",
            ),
            [Field("record_state")],
            _custom(config, endpoint),
        ),
        (
            *COMMON_ASSOCIATIONS,
            Association("contact_person", "belongs_to", (PERSON,), "contact_person_id"),
        ),
        ("name",),
        "Private::Crm::CaseQueue",
        human_name="Case",
        human_plural="Cases",
    )


def _opportunities(config: SandboxConfig) -> RecordType:
    endpoint = "crm/opportunities"
    return RecordType(
        endpoint,
        OPPORTUNITY,
        "opportunity",
        _columns(
            _common(config, queue=True),
            [
                Field("description", required=True, nullable=False),
                Field("document_date", "date"),
                Field("document_currency"),
                Field("home_currency"),
                Field("comment", "text"),
                Field("fao"),
                Field("opportunity_contact_ids", "array", filterable=False),
                Field("opportunity_contact_roles", "array", filterable=False),
            ],
            _custom(config, endpoint),
        ),
        COMMON_ASSOCIATIONS,
        ("description",),
        "Private::Crm::OpportunityQueue",
        human_name="Opportunity",
        human_plural="Opportunities",
        described_by="description",
    )


def _activity_columns(config: SandboxConfig, endpoint: str) -> dict[str, Field]:
    """Every activity type shares one set of columns (the activities union returns them all),
    so the meeting location field [INF] §4.7, §8 q9 is a column of tasks too."""
    location: list[Field] = []
    if config.meeting_location_field:
        location = [Field(config.meeting_location_field)]
    return _columns(
        _common(config, queue=True),
        [
            Field(n, "picklist_data", picklist=ACTIVITY_PICKLISTS[n])
            for n in ACTIVITY_PICKLIST_FIELDS
        ],
        [
            Field("description", "text"),
            Field("primary_contact_type"),
            Field("reminder_datetime", "datetime"),
        ],
        _fields(("all_day", "reminder_enabled"), "boolean"),
        _fields(("reminder_minutes", "primary_contact_id", "duration"), "integer"),
        _var_dates(VAR_DATE_FIELDS),
        location,
        _custom(config, endpoint),
    )


ACTIVITY_ASSOCIATIONS = (
    *COMMON_ASSOCIATIONS,
    Association(
        "primary_contact", "belongs_to", (PERSON, ORGANISATION, LEAD), "primary_contact_id", True
    ),
    Association("activity_links", "has_many", ("Private::Activity::ActivityLink",), "activity_id"),
)


def _activity(config: SandboxConfig, endpoint: str, class_name: str, human: str) -> RecordType:
    return RecordType(
        endpoint,
        class_name,
        "activity",
        _activity_columns(config, endpoint),
        ACTIVITY_ASSOCIATIONS,
        ("name",),
        "Private::Activity::ActivityQueue",
        var_dates=VAR_DATE_FIELDS,
        base_class_name=ACTIVITY,
        human_name=human,
        human_plural=f"{human}s",
    )


def _polymorphic_link(
    config: SandboxConfig,
    endpoint: str,
    class_name: str,
    sequence: str,
    owner: tuple[str, str, tuple[str, ...]],
    human: str,
    extra: Iterable[Field] = (),
) -> RecordType:
    """activity_links, email links and notes: an owner id plus ``resource_type/id``."""
    owner_key, owner_assoc, owner_classes = owner
    fields = [
        Field(owner_key, "integer", required=True, nullable=False),
        Field("resource_type", required=True, nullable=False),
        Field("resource_id", "integer", required=True, nullable=False),
    ]
    return RecordType(
        endpoint,
        class_name,
        sequence,
        _columns(_common(config, queue=False), fields, extra, _custom(config, endpoint)),
        (
            *COMMON_ASSOCIATIONS,
            Association(
                owner_assoc, "belongs_to", owner_classes, owner_key, len(owner_classes) > 1
            ),
            Association("resource", "belongs_to", LINK_TARGETS, "resource_id", True),
        ),
        tuple(f.name for f in fields if f.required),
        human_name=human,
        human_plural=f"{human}s",
    )


def _notes(config: SandboxConfig) -> RecordType:
    endpoint = "notes"
    return RecordType(
        endpoint,
        "Private::Note",
        "note",
        _columns(
            _common(config, queue=False),
            [
                Field("resource_type", required=True, nullable=False),
                Field("resource_id", "integer", required=True, nullable=False),
                Field("subject"),
                Field("text", "text"),
            ],
            _custom(config, endpoint),
        ),
        (
            *COMMON_ASSOCIATIONS,
            Association("resource", "belongs_to", LINK_TARGETS, "resource_id", True),
        ),
        ("resource_type", "resource_id"),
        human_name="Note",
        human_plural="Notes",
        described_by="subject",
    )


def _emails(config: SandboxConfig) -> RecordType:
    endpoint = "email/emails"
    strategy = config.email_link_strategy
    template = [
        Field("render_with_template_name", updateable=False, filterable=False),
        Field("render_with_template_id", "integer", updateable=False, filterable=False),
        Field("render_with_template_in_library", "boolean", updateable=False, filterable=False),
        Field("render_with_resource_type", updateable=False, filterable=False),
        Field("render_with_resource_id", "integer", updateable=False, filterable=False),
        Field("render_with_placeholders", "text", updateable=False, filterable=False),
        Field("attach_uploaded_files", "array", updateable=False, filterable=False),
    ]
    associations = list(COMMON_ASSOCIATIONS)
    links: list[Field] = []
    if strategy != "none":  # [INF] render_with_resource_* files the email against that record
        associations.append(
            Association(
                "render_with_resource", "belongs_to", LINK_TARGETS, "render_with_resource_id", True
            )
        )
    if strategy in ("link_type", "association"):
        associations.append(Association("email_links", "has_many", (EMAIL_LINK,), "email_id"))
    if strategy == "association":
        associations.append(
            Association("linked_resources", "has_many", LINK_TARGETS, None, True, "email_links")
        )
        links = [
            Field(LINKED_TYPES, "array", filterable=False),
            Field(LINKED_IDS, "array", filterable=False),
        ]
    return RecordType(
        endpoint,
        EMAIL,
        "email",
        _columns(
            _common(config, queue=False),
            _fields(("from_address", "to_addresses", "cc_addresses", "bcc_addresses", "subject")),
            [
                Field("synopsis", "text"),
                Field("rfc822", "text", filterable=False),
                Field("status", "picklist_data", picklist="Email Statuses"),
            ],
            template,
            links,
            _custom(config, endpoint),
        ),
        tuple(associations),
        human_name="Email",
        human_plural="Emails",
        described_by="subject",
    )


def _picklist_types(config: SandboxConfig) -> list[RecordType]:
    return [
        RecordType(
            PICKLISTS_PATH,
            PICKLIST,
            "picklist",
            _columns(
                _common(config, queue=False),
                [Field("description", "text")],
            ),
            (
                *COMMON_ASSOCIATIONS,
                Association("picklist_entries", "has_many", (PICKLIST_ENTRY,), "picklist_id"),
            ),
            ("name",),
            human_name="Picklist",
            human_plural="Picklists",
        ),
        RecordType(
            PICKLIST_ENTRIES_PATH,
            PICKLIST_ENTRY,
            "picklist_entry",
            _columns(
                _common(config, queue=False),
                [
                    Field("picklist_id", "integer", required=True, nullable=False),
                    Field("value", required=True, nullable=False),
                    Field("display_order", "integer"),
                ],
            ),
            (
                *COMMON_ASSOCIATIONS,
                Association("picklist", "belongs_to", (PICKLIST,), "picklist_id"),
            ),
            ("picklist_id", "value"),
            human_name="Picklist Entry",
            human_plural="Picklist Entries",
            described_by="value",
        ),
    ]


def _webhook_subscriptions(config: SandboxConfig) -> RecordType:
    """[OBS] Pipedream's component: a normal record type; ``secret_key`` comes back only in
    the create reply (sandbox choice [INF]: never readable afterwards)."""
    return RecordType(
        WEBHOOK_PATH,
        WEBHOOK_SUBSCRIPTION,
        "webhook_subscription",
        _columns(
            _common(config, queue=False),
            [
                Field("description", "text"),
                Field("callback_url", "uri", required=True, nullable=False),
                Field("enabled", "boolean"),
                Field("trigger_id", "integer", required=True, nullable=False),
            ],
        ),
        (*COMMON_ASSOCIATIONS, Association("trigger", "belongs_to", (TRIGGER,), "trigger_id")),
        ("name", "callback_url", "trigger_id"),
        human_name="Webhook Subscription",
        human_plural="Webhook Subscriptions",
    )


def _views(config: SandboxConfig, parts: list[RecordType]) -> dict[str, RecordType]:
    """Read-only endpoints: queue lists and the union of every activity type."""
    views: dict[str, RecordType] = {}
    for endpoint, qclass in QUEUE_ENDPOINTS.items():
        views[endpoint] = RecordType(
            endpoint,
            qclass,
            "queue",
            _columns(
                _common(config, queue=False),
                [Field("queue_type"), Field("user_id", "integer")],
            ),
            writable=False,
            human_name=qclass.rsplit("::", 1)[-1],
        )
    union: dict[str, Field] = {}
    for part in parts:
        union.update(part.columns)
    views[ACTIVITY_UNION] = RecordType(
        ACTIVITY_UNION,
        ACTIVITY,
        "activity",
        union,
        ACTIVITY_ASSOCIATIONS,
        queue_class="Private::Activity::ActivityQueue",
        var_dates=VAR_DATE_FIELDS,
        writable=False,
        human_name="Activity",
        human_plural="Activities",
    )
    return views


def build_schema(config: SandboxConfig) -> Schema:
    """Every type the sandbox serves under ``config``."""
    link_path = config.email_link_path
    link_type = _polymorphic_link(
        config, link_path, EMAIL_LINK, "email_link", ("email_id", "email", (EMAIL,)), "Email Link"
    )
    activities = [
        _activity(config, "activity/tasks", TASK, "Task"),
        _activity(config, "activity/meetings", MEETING, "Meeting"),
    ]
    types = [
        _people(config),
        _organisations(config),
        _party_locations(config),
        _sales_leads(config),
        _cases(config),
        _opportunities(config),
        *activities,
        _polymorphic_link(
            config,
            "activity/activity_links",
            "Private::Activity::ActivityLink",
            "activity_link",
            ("activity_id", "activity", (TASK, MEETING)),
            "Activity Link",
            [Field("activity_type")],
        ),
        _notes(config),
        _emails(config),
        *_picklist_types(config),
        _webhook_subscriptions(config),
    ]
    if config.email_link_strategy == "link_type":
        types.append(link_type)
    return Schema(
        {t.endpoint: t for t in types},
        _views(config, activities),
        build_picklists(config),
        link_type,
        config.email_link_strategy,
        config.webhooks_allowed,
    )
