"""The Graph client: msgraph-sdk's GraphServiceClient + azure-identity, one request path.

Every call goes through `GraphClient.request`: the SDK's request adapter (auth, base URL,
middleware) sends it with `NativeResponseHandler`, so we get the raw httpx response and parse
the JSON ourselves (kiota model parsing is ~100x more expensive per item, graph.md §6.6).
Around it: a per-mailbox limiter (≤4 in flight), our retry policy (Retry-After honoured;
too-long waits become `RetryLater` for the caller), and error translation in
`sync.graph.errors`.  The same class runs against Graph and the sandbox; only
`GraphSettings.base_url` / `authority_host` differ.

Every delta round, whichever folder it reads, is paged by `DeltaReader`.  Readers send
`Prefer: IdType="ImmutableId"` and `odata.maxpagesize` on every request, including next/delta
links, because Graph does not carry Prefer over (graph.md §2.2, §6.4).  Sent items come out as
`Message` models (`sent_messages`); contacts, events and To Do tasks are read and written as
raw JSON in `sync.graph.items`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote, unquote

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

from sync.core.errors import InvalidRequest, ResyncRequired, RetryLater
from sync.core.graph_models import DeltaPage, Message, page_from_payload
from sync.graph import errors, paths
from sync.graph.auth import build_credential
from sync.graph.limiter import MailboxLimiter, RetryPolicy
from sync.settings import GraphSettings

log = logging.getLogger(__name__)
P = TypeVar("P")
Raw = dict[str, Any]  # a Graph JSON object as received

IMMUTABLE_IDS = 'IdType="ImmutableId"'
UTC_TIMEZONE = 'outlook.timezone="UTC"'
NO_MAILBOX = "_tenant"  # limiter key for calls not bound to a mailbox (subscriptions)
MESSAGE_FIELDS = (
    "id,changeKey,categories,lastModifiedDateTime,createdDateTime,subject,internetMessageId,"
    "conversationId,sentDateTime,receivedDateTime,from,sender,toRecipients,ccRecipients,"
    "bccRecipients,isDraft,bodyPreview,body,parentFolderId,webLink"
)


def _sdk_transport(timeout_seconds: float) -> httpx.AsyncClient:
    """httpx client with the SDK's middleware minus its RetryHandler.

    Why no RetryHandler: it sleeps inside the request (holding our per-mailbox slot), honours
    any Retry-After up to 180 s and retries on its own count, so it would override the policy
    in `RetryPolicy` (bounded waits, re-queue beyond `max_retry_wait_seconds`) and hide 429s
    from the limiter.  HTTP/1.1 because long-lived HTTP/2 clients hit ConnectionTerminated
    (graph.md §6.2).
    """
    from kiota_http.kiota_client_factory import KiotaClientFactory
    from kiota_http.middleware import RetryHandler
    from msgraph.graph_request_adapter import options as sdk_options
    from msgraph_core import GraphClientFactory

    middleware = [
        m
        for m in KiotaClientFactory.get_default_middleware(sdk_options)
        if not isinstance(m, RetryHandler)
    ]
    client = httpx.AsyncClient(http2=False, timeout=httpx.Timeout(timeout_seconds, connect=10.0))
    result: httpx.AsyncClient = GraphClientFactory.create_with_custom_middleware(
        middleware, client=client
    )
    return result


# A nextLink we hand out carries, after this fragment, where its round restarts when Exchange
# has dropped the link's sync state: the delta link the round began at, or nothing for a new
# round.  A fragment is never sent (it is cut off before every request), so Graph sees its own
# link unchanged.
RESUME = "#resume="
MAX_RESTARTS = 3  # restarts of one round before a lost nextLink is a ResyncRequired again


def with_resume(next_link: str, restart: str) -> str:
    """A nextLink that remembers where its round restarts (``""``: a new round)."""
    return f"{next_link}{RESUME}{quote(restart, safe='')}"


def split_resume(link: str) -> tuple[str, str | None]:
    """(the link as Graph gave it, where its round restarts: a delta link, ``""`` for a new
    round, or None when the link does not say)."""
    url, sep, fragment = link.partition("#")
    if not sep or not fragment.startswith(RESUME[1:]):
        return url, None
    return url, unquote(fragment[len(RESUME) - 1 :])


def is_delta_link(url: str) -> bool:
    """A deltaLink carries ``$deltatoken``, a nextLink ``$skiptoken`` (graph.md §2.1)."""
    query = unquote(url.partition("?")[2]).lower()
    return "$deltatoken=" in query and "$skiptoken=" not in query


class DeltaReader(Generic[P]):
    """The one delta pager: the pages of one round, each handed out as ``parse`` makes it of the
    page's JSON (raw dicts for the two-way streams, ``DeltaPage[Message]`` for sent items).
    `delta_link` is known only after the last page was read, so a caller that stops early can
    never store a link that skips unread changes.  Every page, next links included, is fetched
    with the same Prefer headers (Graph does not carry them over, graph.md §2.2).

    **A lost nextLink resumes the round.**  Exchange keeps only the newest few sync-state
    generations of a round, so a nextLink can answer 410 ``SyncStateNotFound`` while the delta
    link the round began at still works (docs/graph.md, "Invalidated nextLinks").  The reader
    then reads the round again from that delta link (items already handed out come again, as
    delta replays do anyway), not the whole folder; a round that began without one (``initial``,
    a new round) starts again from ``initial``.  The nextLinks it hands out carry their restart
    point (``RESUME``), so a caller that stored one (sent items checkpoint mid-round) resumes
    the same way.  Only when the restart point itself is refused, or after ``MAX_RESTARTS``, is
    the ``ResyncRequired`` the caller's (drop the link, full round)."""

    def __init__(
        self,
        client: GraphClient,
        mailbox: str,
        start_url: str,
        prefer: tuple[str, ...],
        parse: Callable[[Raw], P],
        *,
        initial: str | None = None,
    ) -> None:
        self._client, self._mailbox = client, mailbox
        self._start, restart = split_resume(start_url)
        if restart is None:  # a link of ours, or Graph's: a delta link is its own restart point
            restart = "" if self._start == initial else None
            restart = self._start if is_delta_link(self._start) else restart
        self._restart, self._initial = restart, initial
        self._prefer, self._parse = prefer, parse
        self._delta_link: str | None = None
        self.restarts = 0  # rounds read again from their restart point (lost nextLinks)

    def __aiter__(self) -> AsyncIterator[P]:
        return self._pages()

    def _restart_url(self) -> str | None:
        """Where the round reads again after a lost nextLink (None: nowhere, resync)."""
        if self._restart is None:
            return None
        return self._restart or self._initial or None  # a new round needs its first request

    async def _pages(self) -> AsyncIterator[P]:
        url, seen = self._start, set[str]()
        while True:
            try:
                resp = await self._client.request(
                    "GET", url, mailbox=self._mailbox, prefer=self._prefer
                )
            except ResyncRequired as exc:
                again = self._restart_url()
                if again is None or url == again or self.restarts >= MAX_RESTARTS:
                    raise
                self.restarts += 1
                log.info(
                    "delta round of %s read again from its %s: a nextLink was lost (%s)",
                    self._mailbox,
                    "last delta link" if self._restart else "start",
                    exc.detail or exc,
                )
                url, seen = again, set()
                continue
            payload: Raw = json.loads(resp.content)
            next_link = payload.get("@odata.nextLink")
            if next_link and self._restart is not None:
                payload["@odata.nextLink"] = with_resume(str(next_link), self._restart)
            yield self._parse(payload)
            delta_link = payload.get("@odata.deltaLink")
            if delta_link:
                self._delta_link = str(delta_link)
                return
            if not next_link or next_link in seen:
                raise InvalidRequest(
                    "delta page without a new nextLink or deltaLink", source=errors.SOURCE
                )
            seen.add(next_link)
            url = str(next_link)

    @property
    def delta_link(self) -> str:
        if self._delta_link is None:
            raise RuntimeError("delta link is known only after the last page was read")
        return self._delta_link


def delta_prefer(page_size: int, *extra: str) -> tuple[str, ...]:
    """Prefer headers of a delta reader: immutable ids and the page size, plus ``extra``."""
    return (IMMUTABLE_IDS, f"odata.maxpagesize={page_size}", *extra)


def raw_page(payload: Raw) -> Raw:
    """A delta page as its JSON (the two-way streams map entries themselves)."""
    return payload


def message_page(payload: Raw) -> DeltaPage[Message]:
    """A sent-items delta page as `Message` models and removals."""
    return page_from_payload(payload, Message.model_validate)


class GraphClient:
    """All Graph I/O of the service.  Build with `GraphClient.create(settings)`."""

    def __init__(
        self,
        service: Any,
        settings: GraphSettings,
        *,
        credential: AsyncTokenCredential | None = None,
        http: httpx.AsyncClient | None = None,
        policy: RetryPolicy | None = None,
        token_credential: AsyncTokenCredential | None = None,
    ) -> None:
        self.service = service  # msgraph GraphServiceClient
        self.settings = settings
        # What the SDK signs requests with (owned or not); doctor reads its token's roles.
        self.token_credential = token_credential or credential
        self.base_url = settings.base_url.rstrip("/")
        self.limiter = MailboxLimiter(settings.max_concurrency)
        self.policy = policy or RetryPolicy(max_wait_seconds=settings.max_retry_wait_seconds)
        self._credential = credential  # owned: closed by aclose()
        self._http = http

    @classmethod
    def create(
        cls,
        settings: GraphSettings,
        *,
        credential: AsyncTokenCredential | None = None,
        policy: RetryPolicy | None = None,
        timeout_seconds: float = 100.0,
    ) -> GraphClient:
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from msgraph import GraphRequestAdapter, GraphServiceClient

        owned = build_credential(settings) if credential is None else None
        cred = credential or owned
        # Explicit scopes: without them kiota derives `{scheme}://{host}/.default` from the
        # request host, which is wrong for the sandbox (graph.md §6.1).
        auth = AzureIdentityAuthenticationProvider(cred, scopes=[settings.scope])
        http = _sdk_transport(timeout_seconds)
        adapter = GraphRequestAdapter(auth, http)
        adapter.base_url = settings.base_url.rstrip("/")
        service = GraphServiceClient(request_adapter=adapter)
        return cls(
            service, settings, credential=owned, http=http, policy=policy, token_credential=cred
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._credential is not None:
            await self._credential.close()

    # --- the one request path ------------------------------------------------------------------
    async def request(
        self,
        method: str,
        url: str,
        *,
        mailbox: str | None = None,
        body: dict[str, Any] | None = None,
        prefer: Iterable[str] = (IMMUTABLE_IDS,),
    ) -> httpx.Response:
        """Send one request with limits and retries; return the 2xx response or raise a
        `sync.core.errors.SyncError`.  `url` is absolute or relative to the base URL."""
        key = mailbox or NO_MAILBOX
        target = url if url.startswith(("http://", "https://")) else f"{self.base_url}{url}"
        prefer = tuple(prefer)
        attempt = 0
        while True:
            attempt += 1
            async with self.limiter.slot(key, self.policy.max_wait_seconds):
                try:
                    resp = await self._send(method, target, body, prefer)
                except (httpx.TransportError, httpx.TimeoutException) as exc:
                    failure: Exception = errors.from_transport(exc)
                except ClientAuthenticationError as exc:
                    raise errors.from_credential_failure(exc, rejected=True) from exc
                except ServiceRequestError as exc:
                    failure = errors.from_credential_failure(exc, rejected=False)
                else:
                    if resp.status_code < 400:
                        return resp
                    failure = errors.from_response(
                        resp.status_code, resp.headers, resp.content, now=_now()
                    )
            if not isinstance(failure, RetryLater) or not _may_retry(method, failure):
                raise failure
            if failure.retry_at is not None:
                self.limiter.hold(key, failure.retry_at)
            wait = self.policy.next_wait(failure, attempt, _now())
            if wait is None:
                raise failure
            await asyncio.sleep(wait)

    async def _send(
        self, method: str, url: str, body: dict[str, Any] | None, prefer: tuple[str, ...]
    ) -> httpx.Response:
        from kiota_abstractions.method import Method
        from kiota_abstractions.native_response_handler import NativeResponseHandler
        from kiota_abstractions.request_information import RequestInformation
        from kiota_http.middleware.options import ResponseHandlerOption

        info = RequestInformation(Method(method))
        info.url = url
        for value in prefer:
            info.headers.add("Prefer", value)
        if body is not None:
            info.headers.add("Content-Type", "application/json")
            info.content = json.dumps(body).encode("utf-8")
        info.add_request_options([ResponseHandlerOption(NativeResponseHandler())])
        resp: httpx.Response = await self.service.request_adapter.send_primitive_async(
            info, "bytes", None
        )
        return resp

    # --- delta rounds ---------------------------------------------------------------------------
    def delta(
        self,
        mailbox: str,
        start: str,
        prefer: tuple[str, ...],
        parse: Callable[[Raw], P],
        *,
        initial: str | None = None,
    ) -> DeltaReader[P]:
        """A delta round from ``start`` (a collection's delta path, or a stored link);
        ``initial``: the collection's delta path, where a new round starts."""
        return DeltaReader(self, mailbox, start, prefer, parse, initial=initial)

    def sent_messages(
        self, mailbox: str, delta_link: str | None = None, *, page_size: int = 50
    ) -> DeltaReader[DeltaPage[Message]]:
        """Delta over Sent Items (`mailFolders/sentitems/messages/delta`)."""
        initial = paths.folder_delta_path(mailbox, "sentitems", MESSAGE_FIELDS)
        start = delta_link or initial
        return self.delta(mailbox, start, delta_prefer(page_size), message_page, initial=initial)

    # --- subscriptions (raw JSON; the manager in sync.engine.subscriptions owns the policy) -----
    async def create_subscription(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /subscriptions with `Prefer: IdType="ImmutableId"` so notifications carry
        immutable ids (graph.md §1.11)."""
        resp = await self.request("POST", paths.SUBSCRIPTIONS, body=body)
        data: dict[str, Any] = resp.json()
        return data

    async def renew_subscription(self, subscription_id: str, expires: datetime) -> datetime:
        path = paths.subscription_path(subscription_id)
        resp = await self.request("PATCH", path, body={"expirationDateTime": iso_utc(expires)})
        return parse_iso(resp.json()["expirationDateTime"])

    async def delete_subscription(self, subscription_id: str) -> None:
        path = paths.subscription_path(subscription_id)
        await self.request("DELETE", path)


def _may_retry(method: str, failure: RetryLater) -> bool:
    """POST is not idempotent: after a timeout or 5xx the item may exist already, so only a
    429 (Graph refused before executing) is retried here; anything else goes back to the job,
    whose rerun finds the item by its Workbooks stamp."""
    return method != "POST" or errors.was_throttled(failure)


def _now() -> datetime:
    return datetime.now(UTC)


def iso_utc(ts: datetime) -> str:
    """A datetime as Graph takes it in bodies and query parameters (UTC, whole seconds)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime:
    """A Graph ISO timestamp (``...Z``) as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
