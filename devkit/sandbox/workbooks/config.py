"""Settings of the Workbooks sandbox: users, limits, throttling and the [INF] choices.

Everything the API notes mark [INF] (unconfirmed on a live tenant) is a field here rather than a
constant, so a test can reproduce whichever behaviour the real service turns out to have.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class SimUser(BaseModel):
    """A Workbooks user the sandbox knows; ``api_key`` identifies user and database at once."""

    user_id: int
    person_name: str
    login_name: str
    # Kept out of repr() and str() (pydantic's str() lists every field), so never logged.
    api_key: str = Field(repr=False)
    password: str = Field(default="password", repr=False)

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


class SandboxConfig(BaseModel):
    """How the simulated Workbooks service behaves. Defaults follow workbooks-api.md §7."""

    users: list[SimUser] = Field(default_factory=_default_users)
    # /_sim/ control endpoints exist only in sandbox mode; off by default so a sandbox that is
    # exposed by mistake cannot be reset or edited from outside.
    sim_controls: bool = False
    email_link_path: str = "email/email_links"  # [INF] the real link mechanism is unknown
    object_ref_prefixes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_PREFIXES))
    database_instance_id: int = 47119
    logical_database_id: int = 13330
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
    # --- throttling (per credential)
    concurrency_cap: int | None = 5
    rate_per_second: float | None = None  # token bucket; None = unlimited
    burst: int = 20
    throttle_location: str = "same"  # "same" (request URL) or "delay" (/_delay?...)
    retry_after_seconds: int | None = None  # optional Retry-After header, off by default
    # --- faults and background jobs
    latency_ms: float = 0.0
    email_send_delay_seconds: float = 2.0
