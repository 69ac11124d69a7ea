"""Building storage clients from settings: a connection string (Azurite, CI, local) or
endpoint URIs + managed identity (Azure). Azurite cannot do OAuth, so only the first path
runs in tests; the second is the one the infra templates configure."""

from __future__ import annotations

from typing import Any

from sync.settings import AppSettings


def managed_credential(client_id: str | None) -> Any:
    """The user-assigned managed identity ``client_id`` if given, else DefaultAzureCredential
    (storage and Key Vault both sign in with it)."""
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    if client_id:
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential()


def _connection_string(app: AppSettings) -> str | None:
    """The storage connection string, or None when storage is reached by managed identity."""
    if app.storage_connection is None:
        return None
    return app.storage_connection.get_secret_value() or None


def _transport() -> Any:
    """aiohttp transport without environment proxy/.netrc lookups: by default aiohttp reads
    them on every request (about 1 ms of CPU each), which the webhook's hot path cannot afford.
    Azure Functions reaches storage directly, so there is nothing to look up."""
    from azure.core.pipeline.transport import AioHttpTransport

    return AioHttpTransport(use_env_settings=False)


def table_service(app: AppSettings) -> Any:
    from azure.data.tables.aio import TableServiceClient

    conn = _connection_string(app)
    if conn:
        return TableServiceClient.from_connection_string(conn, transport=_transport())
    assert app.storage_table_uri is not None
    return TableServiceClient(
        endpoint=app.storage_table_uri,
        credential=managed_credential(app.storage_client_id),
        transport=_transport(),
    )


# The queue SDK's retries (its ExponentialRetry): the first after initial_backoff +
# increment_base seconds, the next ones after initial_backoff + increment_base ** n, each
# +- random_jitter_range.  Its defaults (15, 3, 3) make one dropped connection (a keep-alive
# socket the server closed, a reset) cost 15-21 s before the retry: measured 17.9 s for one
# send, during which the webhook's intake for that stream held every later notification of
# it (answered 503) and its job waited.  These retry after about 1.5, 2.3 and 3.4 s, like the
# Table SDK's quick retries; longer trouble is for the service's own retries (Graph re-sends
# a notification answered 503, the host re-runs a job).
QUEUE_RETRY: dict[str, Any] = {
    "initial_backoff": 0,
    "increment_base": 1.5,
    "random_jitter_range": 0.5,
    "retry_total": 3,
}


def queue_service(app: AppSettings) -> Any:
    """The queue service client. Message encoding is set per queue client (``JobQueue``):
    the Functions trigger expects base64 and silently dead-letters anything else.  The retry
    settings (``QUEUE_RETRY``) pass on to the queue clients it makes."""
    from azure.storage.queue.aio import QueueServiceClient

    conn = _connection_string(app)
    if conn:
        return QueueServiceClient.from_connection_string(
            conn, transport=_transport(), **QUEUE_RETRY
        )
    assert app.storage_queue_uri is not None
    return QueueServiceClient(
        account_url=app.storage_queue_uri,
        credential=managed_credential(app.storage_client_id),
        transport=_transport(),
        **QUEUE_RETRY,
    )
