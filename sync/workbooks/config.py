"""Who the client talks to (identity) and how (tunables from ``WorkbooksSettings``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from sync.settings import WorkbooksSettings


@dataclass(frozen=True)
class WorkbooksIdentity:
    """One Workbooks identity: service URL + API key + the user it belongs to.

    The key is a ``SecretStr`` so it never appears in a repr, a log line or an exception.
    """

    service_url: str  # e.g. https://secure.workbooks.com or the sandbox's http://127.0.0.1:N
    api_key: SecretStr
    user: str = ""  # the mailbox/user this identity acts for (diagnostics only)

    @property
    def base_url(self) -> str:
        return self.service_url.rstrip("/")


@dataclass(frozen=True)
class ClientConfig:
    """Tunables shared by every identity.  Defaults equal ``WorkbooksSettings`` defaults."""

    application_name: str = "Outlook Sync"
    user_agent: str = "OutlookWorkbooksSync/0.1 (gzip)"
    email_link_path: str = "email/email_links"
    batch_size: int = 100
    page_size: int = 100
    in_list_size: int = 100
    max_concurrency: int = 5
    timeout_seconds: float = 120.0
    throttle_max_attempts: int = 8
    # Backoff for throttling redirects: base * 2**attempt, capped (§1.8: 0.5, 1, 2, 4, 8 s).
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 8.0
    relogin_attempts: int = 2  # session expiry re-logins per request before ReauthRequired
    # [INF] lead email attributes (§4.4 and §8 q8): which nested fields hold a lead's address.
    lead_email_fields: tuple[str, ...] = field(
        default=("person_lead_party[main_location[email]]", "org_lead_party[main_location[email]]")
    )
    # [INF] the rest of the unconfirmed points, each verified against metadata/types
    # (``sync.workbooks.schema``): how an email is linked (auto = from the metadata), the
    # status emails are stored with ("" = a stored status the tenant has, else DRAFT), the
    # meeting location column ("" = none), the activity type of new tasks, and whether
    # ``watched`` may scope a read.
    email_link_strategy: str = "auto"
    email_status: str = "auto"
    # [INF] whether Contact Details rows of deleted owners are listed (``sync.workbooks.owners``)
    deleted_owner_locations: str = "auto"
    meeting_location_field: str = "location"
    task_activity_type: str = "To-do"
    watched_filter: bool = True
    schema_ttl_seconds: float = 21600.0  # metadata/types is read again after this long

    @classmethod
    def from_settings(cls, settings: WorkbooksSettings, **overrides: object) -> ClientConfig:
        values: dict[str, object] = {
            "application_name": settings.application_name,
            "user_agent": settings.user_agent,
            "email_link_path": settings.email_link_path,
            "batch_size": settings.batch_size,
            "page_size": settings.page_size,
            "in_list_size": settings.in_list_size,
            "max_concurrency": settings.max_concurrency,
            "timeout_seconds": settings.timeout_seconds,
            "throttle_max_attempts": settings.throttle_max_attempts,
            "schema_ttl_seconds": settings.schema_ttl_seconds,
            "lead_email_fields": settings.lead_email_columns,
            "email_link_strategy": settings.email_link_strategy,
            "email_status": settings.email_status,
            "deleted_owner_locations": settings.deleted_owner_locations,
            "meeting_location_field": settings.meeting_location_field,
            "task_activity_type": settings.task_activity_type,
            "watched_filter": settings.watched_filter,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
