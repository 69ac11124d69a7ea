"""Errors named by what the caller must do, shared by every edge (Graph, Workbooks, storage).

Each external client translates its failures into these types in exactly one place; the engine
decides what to do from the type alone (retry the job later, resync, re-authenticate, give up on
one item) and never looks at status codes.  Tree:

    SyncError
    ├── RetryLater            transient: throttled, 5xx, timeouts; ``retry_at`` when known
    ├── Conflict              optimistic-lock failure: re-read, merge, write again
    ├── ResyncRequired        cursor/delta token no longer valid: full enumeration
    ├── ReauthRequired        credentials rejected or permission missing: operator must act
    ├── NotFound              the addressed item does not exist (or is not visible)
    └── InvalidRequest        our request is wrong for this item: do not retry as is
"""

from __future__ import annotations

from datetime import datetime


class SyncError(Exception):
    """Root of every error the engine knows how to act on."""

    def __init__(self, message: str, *, source: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.source = source  # "graph", "workbooks", "storage"
        self.detail = detail  # server text for diagnostics (never secrets)


class RetryLater(SyncError):
    """Try again later; ``retry_at`` is the earliest useful moment when the server said so."""

    def __init__(
        self,
        message: str,
        *,
        retry_at: datetime | None = None,
        source: str = "",
        detail: str = "",
    ) -> None:
        super().__init__(message, source=source, detail=detail)
        self.retry_at = retry_at


class Conflict(SyncError):
    """The record changed since it was read (stale lock_version / ETag)."""


class ResyncRequired(SyncError):
    """The stored cursor is no longer accepted; restart with a full enumeration."""


class ReauthRequired(SyncError):
    """Credentials rejected, expired or lacking a permission; retrying will not help."""


class NotFound(SyncError):
    """The item does not exist or is not visible to this identity."""


class InvalidRequest(SyncError):
    """The request is malformed or violates a rule for this item; fix input, do not retry."""
