"""The record types the sandbox serves and the facts each one needs (workbooks-api.md §4, §7.24)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

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
COMMON_WRITABLE = frozenset({"created_through_reference", "assigned_to", "owner_id", "name"})
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
    }
)


@dataclass(frozen=True)
class RecordType:
    endpoint: str
    class_name: str
    sequence: str
    fields: frozenset[str]
    required: tuple[str, ...] = ()
    queue_class: str | None = None
    locations: tuple[str, ...] = ()  # nested Contact Details rows (main_location, ...)
    nested_prefixes: tuple[str, ...] = ()  # flat nested keys stored as-is (lead parties)
    var_dates: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

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
        """Whether a write may name this attribute under strict attribute checking."""
        if name in self.fields or name in COMMON_WRITABLE or name.startswith("cf_"):
            return True
        if any(name.startswith(f"{loc}[") for loc in self.locations):
            return name[name.index("[") + 1 : -1] in LOCATION_FIELDS
        if any(name.startswith(f"{p}[") for p in self.nested_prefixes):
            return True
        return any(name in (v, f"{v}_date", f"{v}_datetime") for v in self.var_dates)


def _f(*names: str) -> frozenset[str]:
    return frozenset(names)


PERSON_FIELDS = _f(
    "person_first_name",
    "person_middle_name",
    "person_last_name",
    "person_personal_title",
    "person_salutation",
    "person_suffix",
    "person_job_title",
    "person_job_role",
    "employer_link",
    "employer_name",
    "no_email_soliciting",
    "no_phone_soliciting",
    "no_post_soliciting",
    "website",
    "biography",
    "skype_name",
    "twitter_url",
    "linkedin_url",
)
ACTIVITY_FIELDS = _f(
    "activity_type",
    "activity_status",
    "activity_priority",
    "description",
    "all_day",
    "reminder_enabled",
    "reminder_datetime",
    "reminder_minutes",
    "primary_contact_id",
    "primary_contact_type",
    "duration",
    "location",
)


def build_types(email_link_path: str) -> dict[str, RecordType]:
    """Writable record types by endpoint; the email-link endpoint path is configurable [INF]."""
    types = [
        RecordType(
            "crm/people",
            "Private::Crm::Person",
            "party",
            PERSON_FIELDS,
            ("name",),
            "Private::Crm::PersonQueue",
            ("main_location", "home_location"),
        ),
        RecordType(
            "crm/organisations",
            "Private::Crm::Organisation",
            "party",
            _f(
                "industry",
                "website",
                "organisation_category",
                "organisation_annual_revenue",
                "organisation_num_employees",
                "organisation_company_number",
                "organisation_vat_number",
                "no_email_soliciting",
                "no_phone_soliciting",
                "no_post_soliciting",
            ),
            ("name",),
            "Private::Crm::OrganisationQueue",
            ("main_location",),
        ),
        RecordType(
            "crm/party_locations",
            "Private::Crm::PartyLocation",
            "party_location",
            _f("party_id", "location_name", *LOCATION_FIELDS, "map_position"),
            ("party_id",),
        ),
        RecordType(
            "crm/sales_leads",
            "Private::Crm::SalesLead",
            "sales_lead",
            _f("lead_source_type", "lead_status"),
            (),
            "Private::Crm::SalesLeadQueue",
            nested_prefixes=("person_lead_party", "org_lead_party"),
        ),
        RecordType(
            "crm/cases",
            "Private::Crm::Case",
            "case",
            _f(
                "problem",
                "contact_person_id",
                "contact_email",
                "contact_phone_number",
                "case_status_id",
                "case_priority_id",
                "case_source_id",
                "case_type_id",
                "product_category_id",
                "record_state",
            ),
            ("name",),
            "Private::Crm::CaseQueue",
        ),
        RecordType(
            "crm/opportunities",
            "Private::Crm::Opportunity",
            "opportunity",
            _f(
                "description",
                "document_date",
                "document_currency",
                "home_currency",
                "comment",
                "fao",
                "opportunity_contact_ids",
                "opportunity_contact_roles",
            ),
            ("description",),
            "Private::Crm::OpportunityQueue",
        ),
        RecordType(
            "activity/tasks",
            "Private::Activity::Task",
            "activity",
            ACTIVITY_FIELDS,
            ("name",),
            "Private::Activity::ActivityQueue",
            var_dates=VAR_DATE_FIELDS,
        ),
        RecordType(
            "activity/meetings",
            "Private::Activity::Meeting",
            "activity",
            ACTIVITY_FIELDS,
            ("name",),
            "Private::Activity::ActivityQueue",
            var_dates=VAR_DATE_FIELDS,
        ),
        RecordType(
            "activity/activity_links",
            "Private::Activity::ActivityLink",
            "activity_link",
            _f("activity_id", "activity_type", "resource_id", "resource_type"),
            ("activity_id", "resource_id", "resource_type"),
        ),
        RecordType(
            "notes",
            "Private::Note",
            "note",
            _f("resource_type", "resource_id", "subject", "text"),
            ("resource_type", "resource_id"),
        ),
        RecordType(
            "email/emails",
            "Private::Email::Email",
            "email",
            _f(
                "from_address",
                "to_addresses",
                "cc_addresses",
                "bcc_addresses",
                "subject",
                "synopsis",
                "rfc822",
                "status",
                "render_with_template_name",
                "render_with_template_id",
                "render_with_template_in_library",
                "render_with_resource_type",
                "render_with_resource_id",
                "render_with_placeholders",
                "attach_uploaded_files",
            ),
        ),
        RecordType(
            email_link_path,
            "Private::Email::EmailLink",
            "email_link",
            _f("email_id", "resource_type", "resource_id"),
            ("email_id", "resource_type", "resource_id"),
        ),
    ]
    return {t.endpoint: t for t in types}


QUEUE_ENDPOINTS = {
    "crm/person_queues": "Private::Crm::PersonQueue",
    "crm/organisation_queues": "Private::Crm::OrganisationQueue",
    "crm/sales_lead_queues": "Private::Crm::SalesLeadQueue",  # [INF] path
    "crm/case_queues": "Private::Crm::CaseQueue",
    "crm/opportunity_queues": "Private::Crm::OpportunityQueue",
    "activity/activity_queues": "Private::Activity::ActivityQueue",
}
ACTIVITY_UNION = "activity/activities"
ACTIVITY_PARTS = ("activity/tasks", "activity/meetings")
