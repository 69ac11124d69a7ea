"""Knobs of the Graph sandbox. Defaults follow Graph's documented behaviour (graph.md); tests
shrink the waits so the suite stays fast."""

from __future__ import annotations

from dataclasses import dataclass, field

from devkit.sandbox.graph.permissions import DEFAULT_APP_ROLES


def _page_sizes() -> dict[str, int]:
    # Messages: documented default of 10 per delta page (graph.md §2.2). The other defaults are
    # not documented; 10 keeps paging visible in every stream.
    return {"message": 10, "contact": 10, "event": 10, "task": 10}


def _max_minutes() -> dict[str, int]:
    # graph.md §1.3: the docs say 10,080 min for basic Outlook subscriptions, but live Graph
    # refuses more than 10,070 ("Subscription expiration can only be 10070 minutes in the
    # future."); todoTask 4,230 min.
    return {"message": 10_070, "contact": 10_070, "event": 10_070, "task": 4_230}


@dataclass
class SandboxConfig:
    controls: bool = False  # /_sim/ endpoints: only in sandbox mode, never by default
    tenant_id: str = "00000000-0000-0000-0000-0000000000aa"
    clients: dict[str, str] = field(  # client id -> secret; kept out of the repr
        default_factory=lambda: {"sandbox-client": "sandbox-secret"}, repr=False
    )
    token_lifetime_seconds: int = 3599
    # Application permissions consented for the app: the `roles` claim of every token issued
    # from now on (permissions.py).  [] issues tokens without the claim.
    app_roles: list[str] = field(default_factory=lambda: list(DEFAULT_APP_ROLES))
    # Exchange's mailbox scoping (RBAC for Applications / application access policy): None lets
    # the app reach every mailbox; a list of UPNs or user ids, only those (To Do is not scoped).
    access_policy: list[str] | None = None
    # Managed identity endpoint (/msi/token, App Service protocol) and federated credentials:
    # identity client id -> its principal (object) id; app client id -> principals it trusts.
    identity_header: str = field(default="sandbox-identity-header", repr=False)
    managed_identities: dict[str, str] = field(
        default_factory=lambda: {"sandbox-identity": "00000000-0000-0000-0000-00000000e1d1"}
    )
    federated_credentials: dict[str, list[str]] = field(
        default_factory=lambda: {"sandbox-client": ["00000000-0000-0000-0000-00000000e1d1"]}
    )
    page_sizes: dict[str, int] = field(default_factory=_page_sizes)
    max_page_size: int = 1000
    delta_duplicates: bool = False  # repeat the last item of a page at the top of the next
    # Exchange keeps only the newest few sync-state generations of a round: an older nextLink
    # answers 410 SyncStateNotFound.  0 keeps every generation; Exchange was seen keeping 3.
    delta_generations_kept: int = 0
    # Real mailboxes always have the To Do list "Tasks" (wellknownListName: defaultList).
    seed_default_todo_list: bool = True
    # Whether deleting a series also reports its occurrences as @removed in calendarView delta.
    # Unconfirmed for Graph; off (only the master is reported) is the stricter assumption.
    series_delete_reports_occurrences: bool = False
    # Throttling per mailbox (graph.md §3.1): 10,000 requests / 10 min, 4 concurrent.
    throttle_requests: int = 10_000
    throttle_window_seconds: float = 600.0
    throttle_concurrency: int = 4
    concurrency_retry_after: int = 1
    # Subscriptions
    validation_timeout_seconds: float = 10.0
    max_subscription_minutes: dict[str, int] = field(default_factory=_max_minutes)
    min_subscription_minutes: int = 45
    notify_delay_seconds: float = 0.0
    notify_duplicates: int = 0  # extra copies of every notification POST
    notify_reorder_seconds: float = 0.0  # random extra delay per POST, which reorders them
    notify_attempts: int = 3
    notify_retry_seconds: float = 0.2
    latency_seconds: float = 0.0
