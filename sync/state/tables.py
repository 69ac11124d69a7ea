"""Logical names of every table and queue the service uses (physical table = prefix + name).

The infra templates and their consistency test read these lists, so adding a table or queue here
without creating it in ``infra/`` fails the test suite.
"""

from __future__ import annotations

TABLES: tuple[str, ...] = (
    "mailboxes",  # registry: which mailboxes sync, their Workbooks identity and policy
    "subscriptions",  # Graph subscriptions: id -> mailbox, stream, clientState hash, expiry
    "cursors",  # per (mailbox, stream): delta link / watermark, lease, health
    "dirty",  # per (mailbox, stream): "a job is already queued" marker (coalesces notifications)
    "links",  # Outlook item <-> Workbooks record, with the last synced snapshot
    "emails",  # processed sent messages, their create intents and pending addresses
    "runs",  # run log: one row per job run (counts, errors, timings)
    "jobs",  # manual-sync job status (progress for GET /api/sync/jobs/{id})
)

# Queue names are settings (SYNC_JOBS_QUEUE); these are the defaults the templates create.
DEFAULT_JOBS_QUEUE = "sync-jobs"
POISON_SUFFIX = "-poison"
