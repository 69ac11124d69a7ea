"""Application settings, read from the environment (Azure app settings) and validated at start-up.

Every setting the service reads is declared here, in one of three groups:

* ``AppSettings``      - storage, queues, schedules, webhook limits, secrets (prefix ``SYNC_``,
  plus the host's own ``AzureWebJobsStorage`` names);
* ``GraphSettings``    - the Entra ID application and Graph endpoint (prefix ``GRAPH_``);
* ``WorkbooksSettings``- Workbooks API behaviour shared by every mailbox (prefix ``WORKBOOKS_``).

``load_settings()`` turns a pydantic ``ValidationError`` into ``SettingsError`` whose message
names each bad variable and what is expected, so a misconfigured deployment stops with one
readable line per problem instead of a stack trace.  The README's settings table and the infra
consistency check are both derived from these classes (``settings_catalogue()``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from sync.state.tables import POISON_SUFFIX

_NCRONTAB_FIELD = re.compile(r"^[0-9*/,\-A-Za-z]+$")
_QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
# Azure queue names are at most 63 characters, and the poison queue's name is ours + suffix.
MAX_JOBS_QUEUE_CHARS = 63 - len(POISON_SUFFIX)
_TABLE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")


class SettingsError(Exception):
    """The environment does not describe a usable configuration."""


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
# Live Graph refuses a mail, contact or event subscription that expires more than 10,070
# minutes ahead ("Subscription expiration can only be 10070 minutes in the future."), though
# its docs say 10,080 (graph.md §1.3).  sync.core.subscriptions.MAX_LIFETIME is the same.
MAX_SUBSCRIPTION_MINUTES = 10_070
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


class _Checked(BaseSettings):
    """Checks every setting group shares."""

    @field_validator("*", mode="before")
    @classmethod
    def _resolved(cls, value: Any) -> Any:
        # In Azure the platform replaces a Key Vault reference with the secret before the app
        # starts. When it cannot (secret missing, identity without 'Key Vault Secrets User',
        # keyVaultReferenceIdentity wrong) the app sees the reference text itself; using that as
        # a secret fails later and obscurely, so stop here and say what to fix. The reference is
        # not echoed: the variable name is enough to find it.
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and text.strip().startswith(KEY_VAULT_REFERENCE):
            raise ValueError(
                "still reads '@Microsoft.KeyVault(...)': the platform did not resolve this Key "
                "Vault reference. Check that the secret exists in the vault and that the app's "
                "identity has 'Key Vault Secrets User' on it (the portal shows each reference's "
                "status under the app's Environment variables), then restart the app"
            )
        return value


def _check_ncrontab(value: str) -> str:
    """Six fields, seconds first, as the Functions host expects (not classic 5-field cron)."""
    fields = value.split()
    if len(fields) != 6 or not all(_NCRONTAB_FIELD.match(f) for f in fields):
        raise ValueError(
            "expected a six-field NCRONTAB expression with seconds first, "
            "e.g. '0 */30 * * * *' (every 30 minutes)"
        )
    try:
        from croniter import croniter

        croniter(value, second_at_beginning=True)
    except (ValueError, KeyError) as exc:  # croniter raises subclasses of ValueError
        raise ValueError(f"not a valid NCRONTAB expression: {exc}") from None
    return value


class AppSettings(_Checked):
    """Storage, queues, timers, webhook intake and secrets."""

    model_config = SettingsConfigDict(env_prefix="SYNC_", extra="ignore", populate_by_name=True)

    storage_connection: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AzureWebJobsStorage", "SYNC_STORAGE_CONNECTION"),
        description="Storage connection string (Azurite/CI: 'UseDevelopmentStorage=true' or the "
        "explicit form). Leave empty in Azure and set the identity-based '__' settings instead.",
    )
    storage_table_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AzureWebJobsStorage__tableServiceUri"),
        description="Table endpoint for managed-identity access, e.g. https://<acct>.table.core.windows.net",
    )
    storage_queue_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AzureWebJobsStorage__queueServiceUri"),
        description="Queue endpoint for managed-identity access, e.g. https://<acct>.queue.core.windows.net",
    )
    storage_client_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AzureWebJobsStorage__clientId"),
        description="Client id of the user-assigned managed identity used for storage and Key Vault.",
    )
    table_prefix: str = Field(
        default="sync",
        description="Prefix of every table name (letters and digits); lets several deployments "
        "or test runs share one storage account.",
    )
    jobs_queue: str = Field(default="sync-jobs", description="Queue that carries sync jobs.")
    push_schedule: str = Field(
        default="20 * * * * *",
        description="NCRONTAB (seconds first, UTC) of the push tick: each tick queues the "
        "Outlook -> Workbooks push of the mailboxes due in its window, each at its own point of "
        "its policy's push_interval_minutes (default 120).",
    )
    reconcile_schedule: str = Field(
        default="0 * * * * *",
        description="NCRONTAB of the reconcile tick: queues the two-way reconciliation of the "
        "mailboxes due in its window (policy reconcile_interval_minutes, default 30).",
    )
    renew_schedule: str = Field(
        default="0 7 */4 * * *",
        description="NCRONTAB of the Graph subscription renewal sweep (its jobs arrive spread "
        "over 30 minutes).",
    )
    todo_poll_schedule: str = Field(
        default="40 * * * * *",
        description="NCRONTAB of the To Do poll tick (Graph has no app-only To Do webhooks): "
        "queues the poll of the mailboxes due in its window (policy todo_poll_minutes, "
        "default 5).",
    )
    retro_poll_schedule: str = Field(
        default="0 */4 * * * *",
        description="NCRONTAB of the created-since poll that links earlier emails to new "
        "People, Sales Leads and Contact Details where no Workbooks webhook covers them (every "
        "4 minutes: a record is linked within 5).",
    )
    sweep_schedule: str = Field(
        default="*/30 * * * * *",
        description="NCRONTAB of the sweeper, which re-sends a job for every stream whose run "
        "was cut (its lease expired with the owner still named: a worker died or could not "
        "release) or whose job marker is older than SYNC_SWEEP_AFTER_SECONDS.",
    )
    sweep_after_seconds: int = Field(
        default=60,
        ge=10,
        le=3600,
        description="A job marker older than this on a stream nobody runs means its job was "
        "lost; the sweeper re-sends it (at most once per this many seconds per stream).",
    )
    webhook_max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        le=16_777_216,
        description="Largest notification (Graph) or delivery (Workbooks) body the webhooks "
        "accept; larger bodies get 413.",
    )
    webhook_max_token_chars: int = Field(
        default=1024,
        ge=16,
        le=8192,
        description="Longest validationToken echoed back; longer tokens get 400.",
    )
    webhook_deadline_seconds: float = Field(
        default=2.5,
        ge=0.5,
        le=2.9,
        description="Longest a Graph notification waits for storage: past it the webhook "
        "answers 503 and Graph sends the notification again later. Graph counts a reply after "
        "2.9 s as slow and drops every notification to an endpoint with 15 % slow replies; a "
        "503 is not slow. The intake goes on after the 503, and what it queues is kept.",
    )
    webhook_memo_seconds: float = Field(
        default=1.0,
        ge=0,
        le=30,
        description="How long a webhook instance answers repeats for a stream from memory "
        "once it found the stream's job pending during a burst (a second notification for "
        "the stream within this window); the run that takes that job's marker reads again "
        "once the memory has lapsed (a follow-up job if its own read came earlier), so "
        "nothing is missed. 0 turns the memory off.",
    )
    clock_skew_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How far behind another instance's clock may be. A webhook instance that "
        "answers repeats from memory dates the stream's marker for when its memory lapses; "
        "the run that takes the marker counts a flag dated more than this long ago as "
        "lapsed, and otherwise queues a follow-up read for that date plus this.",
    )
    public_base_url: str | None = Field(
        default=None,
        description="Public https base URL of this app as Graph reaches it, e.g. "
        "https://<app>.azurewebsites.net. Required to create subscriptions.",
    )
    secrets_provider: Literal["env", "keyvault"] = Field(
        default="env",
        description="Where secret references resolve: 'env' (environment variables) or "
        "'keyvault' (Azure Key Vault through the managed identity).",
    )
    key_vault_url: str | None = Field(
        default=None,
        description="Key Vault URI, e.g. https://<vault>.vault.azure.net. Required with "
        "SYNC_SECRETS_PROVIDER=keyvault.",
    )
    lease_seconds: int = Field(
        default=60,
        ge=15,
        le=3600,
        description="How long a worker owns a stream without renewing (a live run renews "
        "every third of it); a dead owner's lease expires this long after its last renewal, "
        "and the sweeper then runs the stream again.",
    )
    dirty_marker_ttl_seconds: int = Field(
        default=600,
        ge=10,
        le=86_400,
        description="After this, a stream's 'job pending' marker is treated as lost and a "
        "new notification enqueues again.",
    )
    retry_base_seconds: float = Field(
        default=5.0,
        ge=0.1,
        le=300,
        description="Back-off for a job re-queued after a 5xx, timeout or outage with no "
        "Retry-After: its first wait is drawn from 0 to this many seconds, and the ceiling "
        "doubles with each attempt of the job (full jitter). A Retry-After is honoured instead.",
    )
    retry_cap_seconds: float = Field(
        default=90.0,
        ge=1,
        le=3600,
        description="Longest back-off ceiling for a re-queued job, however many attempts; a "
        "stream retries at most this long after an outage ends.",
    )
    runs_keep_days: int = Field(
        default=14,
        ge=0,
        le=3650,
        description="Days of run history kept per mailbox (the runs table, shown by status); "
        "older runs are deleted by the mailbox's renewal job (every few hours). 0 keeps every run.",
    )
    log_level: LogLevel = Field(
        default="INFO",
        description="Log level of the service's own loggers (sync.*), in Azure and locally.",
    )
    sdk_log_level: LogLevel = Field(
        default="WARNING",
        description="Log level of the Azure SDK and HTTP client loggers (azure.*, including "
        "azure-core's per-request HTTP logging, msal, httpx, aiohttp). INFO logs every request.",
    )
    log_mailbox: Literal["plain", "hash"] = Field(
        default="plain",
        description="How log records name a mailbox (the 'mailbox' field and the worker's line "
        "per job): 'plain' the address, 'hash' a stable hash of it (h: + 16 hex digits).",
    )

    @field_validator(
        "push_schedule",
        "reconcile_schedule",
        "renew_schedule",
        "todo_poll_schedule",
        "retro_poll_schedule",
        "sweep_schedule",
    )
    @classmethod
    def _schedule(cls, value: str) -> str:
        return _check_ncrontab(value)

    @field_validator("jobs_queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if not _QUEUE_NAME.match(value) or len(value) > MAX_JOBS_QUEUE_CHARS:
            raise ValueError(
                f"expected 3-{MAX_JOBS_QUEUE_CHARS} lowercase letters, digits and single "
                f"hyphens (Azure queue naming rules, leaving room for the '{POISON_SUFFIX}' "
                "suffix)"
            )
        return value

    @field_validator("table_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _TABLE_PREFIX.match(value):
            raise ValueError("expected a letter followed by up to 39 letters or digits")
        return value

    @field_validator("public_base_url", "key_vault_url", "storage_table_uri", "storage_queue_uri")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("expected an absolute http(s) URL")
        return value.rstrip("/")

    @field_validator("storage_connection")
    @classmethod
    def _connection(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        text = value.get_secret_value().strip()
        pairs = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
        if pairs.get("UseDevelopmentStorage", "").lower() == "true":
            return value
        if not pairs.get("AccountName") and not any(k.endswith("Endpoint") for k in pairs):
            # Never echo the value: it may contain an account key.
            raise ValueError(
                "not a storage connection string (expected 'UseDevelopmentStorage=true' or "
                "'DefaultEndpointsProtocol=...;AccountName=...;AccountKey=...')"
            )
        return value

    @property
    def creates_storage(self) -> bool:
        """Whether the app creates its tables and queues itself: only with a connection string
        (Azurite, CI, local runs). In Azure (identity-based storage) the templates created them,
        so the request path creates nothing."""
        return self.storage_connection is not None

    @model_validator(mode="after")
    def _storage_and_vault(self) -> AppSettings:
        has_conn = (
            self.storage_connection is not None and self.storage_connection.get_secret_value()
        )
        if not has_conn and not (self.storage_table_uri and self.storage_queue_uri):
            raise ValueError(
                "storage is not configured: set AzureWebJobsStorage to a connection string, or "
                "AzureWebJobsStorage__tableServiceUri and AzureWebJobsStorage__queueServiceUri "
                "for managed-identity access"
            )
        if self.secrets_provider == "keyvault" and not self.key_vault_url:
            raise ValueError("SYNC_KEY_VAULT_URL is required when SYNC_SECRETS_PROVIDER=keyvault")
        if self.retry_cap_seconds < self.retry_base_seconds:
            raise ValueError("SYNC_RETRY_CAP_SECONDS must not be below SYNC_RETRY_BASE_SECONDS")
        if self.sweep_after_seconds <= self.webhook_memo_seconds + self.clock_skew_seconds:
            # A follow-up job's marker is set up to the memory window (plus the clock skew
            # allowed) before the job is due.
            raise ValueError(
                "SYNC_SWEEP_AFTER_SECONDS must be above SYNC_WEBHOOK_MEMO_SECONDS plus "
                "SYNC_CLOCK_SKEW_SECONDS"
            )
        return self


class GraphSettings(_Checked):
    """The Entra ID application the service signs in as, and the Graph endpoint."""

    model_config = SettingsConfigDict(env_prefix="GRAPH_", extra="ignore")

    tenant_id: str = Field(
        min_length=1, description="Entra ID tenant id (GUID) of the customer. Required."
    )
    client_id: str = Field(
        min_length=1, description="Application (client) id of the app registration. Required."
    )
    client_secret: SecretStr | None = Field(
        default=None,
        description="Client secret (use a Key Vault reference in Azure). Leave empty to sign in "
        "with a federated credential instead: the app registration trusts the user-assigned "
        "managed identity (AZURE_CLIENT_ID), whose token is the client assertion.",
    )
    base_url: str = Field(
        default="https://graph.microsoft.com/v1.0",
        description="Graph base URL; the local sandbox is http://127.0.0.1:<port>/v1.0.",
    )
    authority_host: str = Field(
        default="https://login.microsoftonline.com",
        description="Token authority; the local sandbox serves its own.",
    )
    scope: str = Field(default="https://graph.microsoft.com/.default", description="Token scope.")
    subscription_minutes: int = Field(
        default=8640,
        ge=45,
        description="Requested subscription lifetime in minutes, 45 to 10,070: live Graph "
        "refuses more than 10,070 for mail, contacts and events (its docs say 10,080).",
    )
    renew_margin_hours: int = Field(
        default=48,
        ge=1,
        le=160,
        description="Renew a subscription when less than this many hours remain.",
    )
    max_concurrency: int = Field(
        default=4, ge=1, le=4, description="Requests in flight per mailbox (Graph allows 4)."
    )
    max_retry_wait_seconds: int = Field(
        default=60,
        ge=0,
        le=600,
        description="Longest Retry-After the worker sits out; longer waits re-queue the job.",
    )

    @field_validator("base_url", "authority_host")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("expected an absolute http(s) URL")
        return value.rstrip("/")

    @field_validator("subscription_minutes", mode="after")
    @classmethod
    def _lifetime(cls, value: int) -> int:
        if value > MAX_SUBSCRIPTION_MINUTES:
            raise ValueError(
                f"at most {MAX_SUBSCRIPTION_MINUTES}: live Graph refuses a mail, contact or "
                "event subscription that expires further ahead (its docs say 10,080)"
            )
        return value

    @model_validator(mode="after")
    def _renewal(self) -> GraphSettings:
        # A margin as long as the lifetime would renew every subscription at every sweep.
        if self.renew_margin_hours * 60 >= self.subscription_minutes:
            raise ValueError(
                f"GRAPH_RENEW_MARGIN_HOURS ({self.renew_margin_hours} h) must be shorter than "
                f"GRAPH_SUBSCRIPTION_MINUTES ({self.subscription_minutes} min)"
            )
        return self


class WorkbooksSettings(_Checked):
    """Workbooks API behaviour common to every mailbox. Items marked [INF] in the API notes are
    unconfirmed on a live tenant and so are settings rather than constants."""

    model_config = SettingsConfigDict(env_prefix="WORKBOOKS_", extra="ignore")

    application_name: str = Field(
        default="Outlook Sync",
        description="Sent as _application_name; Workbooks stamps it into created_through.",
    )
    user_agent: str = Field(
        default="OutlookWorkbooksSync/0.1 (gzip)",
        description="User-Agent header (required by Workbooks; 'gzip' enables compression).",
    )
    email_link_path: str = Field(
        default="email/email_links",
        description="[INF] Endpoint of the email link type when metadata/types cannot be read "
        "(otherwise the tenant's metadata names it).",
    )
    email_link_strategy: Literal["auto", "link_type", "association", "render_with", "none"] = Field(
        default="auto",
        description="[INF] How an email is tied to a record: auto (chosen from the tenant's "
        "metadata/types), link_type, association, render_with, or none (email linking off).",
    )
    email_status: str = Field(
        default="auto",
        min_length=1,
        max_length=40,
        description="[INF] Status of the emails the service stores; auto: a stored, non-sending "
        "status the tenant's picklist has (e.g. FILED), else DRAFT. Never SEND.",
    )
    lead_email_fields: str = Field(
        default="person_lead_party[main_location[email]],org_lead_party[main_location[email]]",
        description="[INF] Comma-separated Sales Lead columns that hold a lead's email address; "
        "checked against metadata/types.",
    )
    deleted_owner_locations: Literal["auto", "listed", "hidden"] = Field(
        default="auto",
        description="[INF] Whether Workbooks still lists the Contact Details of a deleted "
        "Person or Lead: listed (each address lookup confirms their owners with a People "
        "read), hidden (one read fewer per lookup; two where a lead party's email is a Contact "
        "Details row too, which the tenant's rows must show), or auto (hidden only where the "
        "tenant's own rows show it: five read-only reads per Workbooks database and schema "
        "lifetime).",
    )
    meeting_location_field: str = Field(
        default="location",
        max_length=100,
        description="[INF] Meeting column holding the location; empty: locations are not synced.",
    )
    task_activity_type: str = Field(
        default="To-do",
        min_length=1,
        max_length=100,
        description="[INF] activity_type of tasks created from Outlook; checked against the "
        "tenant's picklist.",
    )
    watched_filter: bool = Field(
        default=True,
        description="[INF] Include records the user watches in My People/activities where the "
        "tenant lets 'watched' be filtered on; false: assigned records only.",
    )
    webhooks: bool = Field(
        default=True,
        description="Subscribe to Workbooks' new-person and new-lead webhooks where the API key "
        "may manage triggers, so earlier emails are linked within seconds; false: the "
        "created-since poll only (SYNC_RETRO_POLL_SCHEDULE).",
    )
    contact_details_trigger_id: int = Field(
        default=0,
        ge=0,
        le=2**31 - 1,
        description="[INF] Trigger id of 'new Contact Details row' (no public id is known; the "
        "sandbox serves 9001); 0: Contact Details are polled.",
    )
    batch_size: int = Field(default=100, ge=1, le=100, description="Objects per write request.")
    page_size: int = Field(default=100, ge=1, le=100, description="Rows per read page.")
    in_list_size: int = Field(
        default=100,
        ge=1,
        le=500,
        description="Values per 'eq' IN-list when resolving many email addresses at once.",
    )
    max_concurrency: int = Field(
        default=5, ge=1, le=5, description="Requests in flight per Workbooks identity."
    )
    split_concurrency: bool = Field(
        default=True,
        description="Split the in-flight limit between a mailbox's five streams (one request "
        "each at the default of 5), so the instances running its jobs never exceed the limit "
        "together (they would be throttled: docs/limits-and-cost.md). Off: each process may "
        "use the whole limit, which is only safe on a single instance.",
    )
    timeout_seconds: float = Field(default=120.0, gt=0, le=600, description="Request timeout.")
    throttle_max_attempts: int = Field(
        default=8, ge=1, le=20, description="Replays of a throttled (302) request before giving up."
    )
    schema_ttl_seconds: float = Field(
        default=21600.0,
        ge=60,
        le=86400,
        description="How long a Workbooks user's schema (metadata/types and two picklists: 4 "
        "calls) is kept before it is read again; a run that Workbooks refuses as malformed "
        "drops it at once, and doctor always reads it afresh.",
    )

    @field_validator("email_status")
    @classmethod
    def _stored_status(cls, value: str) -> str:
        value = value.strip().upper()
        if value == "AUTO":
            return "auto"
        if value == "SEND":
            raise ValueError(
                "SEND would make Workbooks send the message again; use a stored status"
            )
        return value

    @field_validator("lead_email_fields")
    @classmethod
    def _lead_fields(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",")]
        for name in names:
            if not re.fullmatch(r"[a-z0-9_]+(\[[a-z0-9_]+)*\]*", name) or name.count(
                "["
            ) != name.count("]"):
                raise ValueError(
                    f"expected column names like org_lead_party[main_location[email]], not {name!r}"
                )
        return ",".join(names)

    @property
    def lead_email_columns(self) -> tuple[str, ...]:
        return tuple(n for n in self.lead_email_fields.split(",") if n)


@dataclass(frozen=True)
class Settings:
    app: AppSettings
    graph: GraphSettings
    workbooks: WorkbooksSettings


_GROUPS: tuple[type[BaseSettings], ...] = (AppSettings, GraphSettings, WorkbooksSettings)


def env_names(group: type[BaseSettings], field_name: str) -> list[str]:
    """Environment variable names that feed one field (aliases first)."""
    info = group.model_fields[field_name]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(c) for c in alias.choices]
    if isinstance(alias, str):
        return [alias]
    prefix = str(group.model_config.get("env_prefix", ""))
    return [f"{prefix}{field_name}".upper()]


def settings_catalogue() -> list[dict[str, Any]]:
    """Every setting: its variable name(s), default, whether required, and description."""
    rows: list[dict[str, Any]] = []
    for group in _GROUPS:
        for name, info in group.model_fields.items():
            rows.append(
                {
                    "group": group.__name__,
                    "field": name,
                    "env": env_names(group, name),
                    "default": None if info.is_required() else info.default,
                    "required": info.is_required(),
                    "secret": "SecretStr" in str(info.annotation),
                    "description": info.description or "",
                }
            )
    return rows


def _describe(group: type[BaseSettings], error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ()) if part != "__root__"]
        if loc and loc[0] in group.model_fields:
            names = " / ".join(env_names(group, loc[0]))
        elif loc:
            names = loc[0]
        else:
            names = group.__name__
        msg = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        if item.get("type") == "missing" and loc and loc[0] in group.model_fields:
            msg = f"missing; expected: {group.model_fields[loc[0]].description}"
        lines.append(f"{names}: {msg}")
    return lines


def load_settings() -> Settings:
    """Read and validate every group; raise SettingsError listing all problems at once."""
    problems: list[str] = []
    built: dict[str, BaseSettings] = {}
    for group in _GROUPS:
        try:
            built[group.__name__] = group()
        except ValidationError as exc:
            problems.extend(_describe(group, exc))
    if problems:
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems))
    app = built["AppSettings"]
    graph = built["GraphSettings"]
    wb = built["WorkbooksSettings"]
    assert isinstance(app, AppSettings)
    assert isinstance(graph, GraphSettings)
    assert isinstance(wb, WorkbooksSettings)
    return Settings(app=app, graph=graph, workbooks=wb)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, validated once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()
