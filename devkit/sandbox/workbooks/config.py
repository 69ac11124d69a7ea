"""Settings of the Workbooks sandbox: users, limits, throttling and the [INF] choices.

Everything the API notes mark [INF] (unconfirmed on a live tenant) is a field here rather than a
constant, so a test can reproduce whichever behaviour the real service turns out to have.  The
fields in ``RUNTIME_FIELDS`` can also be changed on a running sandbox (``POST /_sim/config``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator


class SimUser(BaseModel):
    """A Workbooks user the sandbox knows; ``api_key`` identifies user and database at once."""

    user_id: int
    person_name: str
    login_name: str
    # Kept out of repr() and str() (pydantic's str() lists every field), so never logged.
    api_key: str = Field(repr=False)
    password: str = Field(default="password", repr=False)
    # The user's zone as login.api reports it (§1.6 sample: a Rails zone name and its offset).
    time_zone: str = "London (GMT+00:00)"

    def __repr__(self) -> str:
        return f"SimUser(user_id={self.user_id}, login_name={self.login_name!r})"


def _default_users() -> list[SimUser]:
    return [
        SimUser(
            user_id=29198,
            person_name="Ann Example",
            login_name="ann@example.com",
            api_key="ann-api-key",
        ),
        SimUser(
            user_id=29199,
            person_name="Bob Example",
            login_name="bob@example.com",
            api_key="bob-api-key",
        ),
    ]


DEFAULT_PREFIXES: dict[str, str] = {
    "crm/people": "PERS-",
    "crm/organisations": "ORG-",
    "crm/sales_leads": "LEAD-",
    "crm/cases": "CASE-",
    "crm/opportunities": "OPP-",
    "activity/tasks": "TASK-",
    "activity/meetings": "MEET-",
    "email/emails": "EMAIL-",
}

# How an email is tied to a record (§4.10, §8 q1: unconfirmed).  ``link_type``: a polymorphic
# link record with its own endpoint (``email_link_path``); ``association``: a has-many on the
# email written as parallel arrays on ``email/emails`` (as ``opportunity_contact_ids``);
# ``render_with``: only ``render_with_resource_type/id`` on create links (the first record);
# ``none``: no way to link at all.
EmailLinkStrategy = Literal["link_type", "association", "render_with", "none"]
# ``flag``: check attribute names when the request or session sets _strict_attribute_checking
# (what the real service does); ``always``: even without it; ``never``: the lax sandbox of old
# (unknown columns read as null, unknown write attributes stored).
AttributeChecking = Literal["flag", "always", "never"]

LEAD_EMAIL_CANDIDATES = (
    "person_lead_party[main_location[email]]",  # [INF] by analogy with people
    "org_lead_party[main_location[email]]",  # [EX][OBS] the documented one
    "person_lead_party[email]",  # [OBS] written by one third-party integration
)
# Not-found texts for updates/deletes of missing or hidden records (§8 q3): the sandbox's own
# sentence, and the two forms Rails' ``find`` raises (before and after Rails 5).
NOT_FOUND_PRESETS = {
    "sandbox": "The record could not be found or you do not have access to it.",
    "rails": "Couldn't find {class_name} with id={id}",
    "rails5": "Couldn't find {class_name} with 'id'={id}",
}


class SandboxConfig(BaseModel):
    """How the simulated Workbooks service behaves. Defaults follow workbooks-api.md §7."""

    users: list[SimUser] = Field(default_factory=_default_users)
    # /_sim/ control endpoints exist only in sandbox mode; off by default so a sandbox that is
    # exposed by mistake cannot be reset or edited from outside.
    sim_controls: bool = False
    object_ref_prefixes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_PREFIXES))
    database_instance_id: int = 47119
    logical_database_id: int = 13330
    # --- attribute checking (§1.5, §3.8)
    attribute_checking: AttributeChecking = "flag"
    custom_fields: dict[str, list[str]] = Field(default_factory=dict)  # endpoint -> cf_ names
    # --- unconfirmed points of the schema [INF]; each shows in metadata/types
    email_link_strategy: EmailLinkStrategy = "link_type"
    email_link_path: str = "email/email_links"  # the link type's endpoint (``link_type``)
    email_status_values: list[str] = Field(default_factory=lambda: ["DRAFT", "SEND", "SENT"])
    lead_email_fields: list[str] = Field(default_factory=lambda: list(LEAD_EMAIL_CANDIDATES[:2]))
    watched_filterable: bool = True
    meeting_location_field: str | None = "location"  # None: meetings have no location
    party_columns: bool = True  # Contact Details expose party[type] / party[id] / party[name]
    # Whether a deleted Person's, Organisation's or Lead's Contact Details rows are still
    # listed (§2.6 hides deleted records; the rows they own are not documented): "listed"
    # (the cautious guess) or "hidden" (not listed unless the read asks for is_deleted).
    deleted_owner_locations: Literal["listed", "hidden"] = "listed"
    # Whether a lead party's main location is also a Contact Details row of that party, as a
    # Person's is (``org_lead_party[main_location[...]]`` suggests it; not confirmed).
    lead_party_locations: bool = False
    not_found_text: str = NOT_FOUND_PRESETS["sandbox"]  # {class_name}, {id}; or a preset name
    # --- reads
    default_page_size: int = 100
    read_hard_cap: int | None = 1000
    email_read_cap: int | None = 100
    # --- writes
    batch_cap: int | None = 100  # None mimics comments_example.php (303 objects accepted)
    # --- sessions
    session_idle_seconds: float = 8 * 3600
    rotate_session_every: int | None = None  # issue a new session id every N requests
    authenticity_failure_status: int = 406  # [INF]
    fast_login_omits_queues: bool = True  # [BIND][INF] _fast_login defaults to true
    require_user_agent: bool = True
    # Where a request with a dead session is redirected (§1.8, §8 q4) [INF]; "same" sends it
    # back to its own URL, which a client cannot tell from a throttling redirect; "401"
    # answers 401 with failure_reason "session_expired" (a documented login failure reason).
    dead_session_location: str = "/login"
    # --- throttling (per credential)
    concurrency_cap: int | None = 5
    rate_per_second: float | None = None  # token bucket; None = unlimited
    burst: int = 20
    throttle_location: str = "same"  # "same" (request URL) or "delay" (/_delay?...)
    retry_after_seconds: int | None = None  # optional Retry-After header, off by default
    # --- webhooks (§4.11)
    webhooks_allowed: bool = True  # False: the key may not manage triggers
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_backoff_seconds: float = 1.0  # doubles per attempt
    webhook_backoff_max_seconds: float = 60.0
    # --- faults and background jobs
    latency_ms: float = 0.0
    email_send_delay_seconds: float = 2.0

    @field_validator("not_found_text")
    @classmethod
    def _preset(cls, value: str) -> str:
        return NOT_FOUND_PRESETS.get(value, value)

    @field_validator("lead_email_fields")
    @classmethod
    def _lead_fields(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.startswith(("person_lead_party[", "org_lead_party[")):
                raise ValueError(f"a lead email field is a lead party column, not {name!r}")
        return value

    @field_validator("email_status_values")
    @classmethod
    def _statuses(cls, value: list[str]) -> list[str]:
        missing = {"DRAFT", "SEND", "SENT"} - set(value)
        if missing:  # [EX] these three are documented; only extra values are in question
            raise ValueError(f"email statuses must include {sorted(missing)}")
        return value


# Fields a running sandbox may change (POST /_sim/config): behaviour, never users or ids.
RUNTIME_FIELDS = frozenset(
    {
        "attribute_checking",
        "custom_fields",
        "email_link_strategy",
        "email_link_path",
        "email_status_values",
        "lead_email_fields",
        "watched_filterable",
        "meeting_location_field",
        "party_columns",
        "deleted_owner_locations",
        "lead_party_locations",
        "not_found_text",
        "dead_session_location",
        "webhooks_allowed",
        "webhook_timeout_seconds",
        "webhook_max_attempts",
        "webhook_backoff_seconds",
        "webhook_backoff_max_seconds",
        "batch_cap",
        "authenticity_failure_status",
        "throttle_location",
        "retry_after_seconds",
        "email_send_delay_seconds",
    }
)
