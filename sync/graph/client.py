"""The Graph client: msgraph-sdk's GraphServiceClient + azure-identity, one request path.

Every call goes through `GraphClient.request`: the SDK's request adapter (auth, base URL,
middleware) sends it with `NativeResponseHandler`, so we get the raw httpx response and parse
JSON into our own small models (kiota model parsing is ~100x more expensive per item,
graph.md §6.6).  Around it: a per-mailbox limiter (≤4 in flight), our retry policy
(Retry-After honoured; too-long waits become `RetryLater` for the caller), and error
translation in `sync.graph.errors`.  The same class runs against Graph and the sandbox; only
`GraphSettings.base_url` / `authority_host` differ.

Readers send `Prefer: IdType="ImmutableId"` and `odata.maxpagesize` on every request,
including next/delta links, because Graph does not carry Prefer over (graph.md §2.2, §6.4).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

from sync.core.errors import InvalidRequest, RetryLater
from sync.core.graph_models import (
    Contact,
    DeltaPage,
    Event,
    Message,
    OutlookItem,
    Removal,
    TodoList,
    TodoTask,
    parse_delta_page,
)
from sync.graph import errors, payloads
from sync.graph.auth import build_credential
from sync.graph.limiter import MailboxLimiter, RetryPolicy
from sync.settings import GraphSettings

T = TypeVar("T", bound=OutlookItem)

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


class DeltaReader(Generic[T]):
    """Pages of one delta round.  `async for page in reader` yields items and removals; the new
    delta link is available (`reader.delta_link`) only after the last page was read, so a
    caller that stops early can never store a link that skips unread changes."""

    def __init__(self, fetch: Callable[[str], Any], start_url: str) -> None:
        self._fetch = fetch
        self._start = start_url
        self._delta_link: str | None = None
        self.pages_read = 0

    def __aiter__(self) -> AsyncIterator[DeltaPage[T]]:
        return self._pages()

    async def _pages(self) -> AsyncIterator[DeltaPage[T]]:
        url, seen = self._start, set[str]()
        while True:
            page: DeltaPage[T] = await self._fetch(url)
            self.pages_read += 1
            yield page
            if page.delta_link:
                self._delta_link = page.delta_link
                return
            if not page.next_link or page.next_link in seen:
                raise InvalidRequest(
                    "delta page without a new nextLink or deltaLink", source=errors.SOURCE
                )
            seen.add(page.next_link)
            url = page.next_link

    @property
    def delta_link(self) -> str:
        if self._delta_link is None:
            raise RuntimeError("delta link is known only after the last page was read")
        return self._delta_link

    async def collect(self) -> tuple[list[T], list[Removal], str]:
        items: list[T] = []
        removed: list[Removal] = []
        async for page in self:
            items.extend(page.items)
            removed.extend(page.removed)
        return items, removed, self.delta_link


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
    ) -> None:
        self.service = service  # msgraph GraphServiceClient
        self.settings = settings
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
        return cls(service, settings, credential=owned, http=http, policy=policy)

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

    def _user(self, mailbox: str) -> Any:
        return self.service.users.by_user_id(mailbox)

    @staticmethod
    def _path(builder: Any, query: Any = None) -> str:
        """Relative URL of an SDK request builder (its `{+baseurl}` is left empty)."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration

        config = RequestConfiguration(query_parameters=query) if query is not None else None
        url: str = builder.to_get_request_information(config).url
        return url

    # --- delta readers --------------------------------------------------------------------------
    def _reader(
        self, mailbox: str, start: str, model: type[T], prefer: tuple[str, ...]
    ) -> DeltaReader[T]:
        async def fetch(url: str) -> DeltaPage[T]:
            resp = await self.request("GET", url, mailbox=mailbox, prefer=prefer)
            return parse_delta_page(resp.content, model)

        return DeltaReader(fetch, start)

    @staticmethod
    def _prefer(page_size: int, *extra: str) -> tuple[str, ...]:
        return (IMMUTABLE_IDS, f"odata.maxpagesize={page_size}", *extra)

    def sent_messages(
        self, mailbox: str, delta_link: str | None = None, *, page_size: int = 50
    ) -> DeltaReader[Message]:
        """Delta over Sent Items (`mailFolders/sentitems/messages/delta`)."""
        start = delta_link or self._messages_start(mailbox, "sentitems")
        return self._reader(mailbox, start, Message, self._prefer(page_size))

    def _messages_start(self, mailbox: str, folder: str) -> str:
        from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_request_builder import (
            DeltaRequestBuilder,
        )

        rb = self._user(mailbox).mail_folders.by_mail_folder_id(folder).messages.delta
        query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            select=MESSAGE_FIELDS.split(",")
        )
        return self._path(rb, query)

    def contacts(
        self,
        mailbox: str,
        delta_link: str | None = None,
        *,
        folder_id: str | None = None,
        page_size: int = 100,
    ) -> DeltaReader[Contact]:
        """Delta over the default contacts folder, or one contact folder."""
        user = self._user(mailbox)
        if folder_id:
            rb = user.contact_folders.by_contact_folder_id(folder_id).contacts.delta
        else:
            rb = user.contacts.delta
        start = delta_link or self._path(rb)
        return self._reader(mailbox, start, Contact, self._prefer(page_size))

    def events(
        self,
        mailbox: str,
        delta_link: str | None = None,
        *,
        window_start: datetime | None = None,
        window_end: datetime | None = None,
        page_size: int = 100,
    ) -> DeltaReader[Event]:
        """calendarView delta (v1.0 has no unbounded event delta, graph.md §2.4).  The window
        is fixed inside the token: pass it for a new round, the delta link afterwards.  Removals
        may name events outside the window; callers match them against their links."""
        if delta_link is None:
            if window_start is None or window_end is None:
                raise ValueError("a new calendarView delta round needs window_start and window_end")
            start = self._events_start(mailbox, window_start, window_end)
        else:
            start = delta_link
        return self._reader(mailbox, start, Event, self._prefer(page_size, UTC_TIMEZONE))

    def _events_start(self, mailbox: str, lo: datetime, hi: datetime) -> str:
        from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import (
            DeltaRequestBuilder,
        )

        query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            start_date_time=iso_utc(lo), end_date_time=iso_utc(hi)
        )
        return self._path(self._user(mailbox).calendar_view.delta, query)

    def todo_tasks(
        self, mailbox: str, list_id: str, delta_link: str | None = None, *, page_size: int = 100
    ) -> DeltaReader[TodoTask]:
        rb = self._user(mailbox).todo.lists.by_todo_task_list_id(list_id).tasks.delta
        start = delta_link or self._path(rb)
        return self._reader(mailbox, start, TodoTask, self._prefer(page_size))

    async def todo_lists(self, mailbox: str) -> list[TodoList]:
        resp = await self.request(
            "GET", self._path(self._user(mailbox).todo.lists), mailbox=mailbox
        )
        return [TodoList.model_validate(v) for v in resp.json().get("value", [])]

    # --- messages -------------------------------------------------------------------------------
    async def get_message(self, mailbox: str, message_id: str) -> Message:
        path = self._path(self._user(mailbox).messages.by_message_id(message_id))
        resp = await self.request("GET", path, mailbox=mailbox)
        return Message.model_validate(resp.json())

    async def set_message_categories(
        self, mailbox: str, message_id: str, categories: list[str]
    ) -> Message:
        path = self._path(self._user(mailbox).messages.by_message_id(message_id))
        body = {"categories": categories}
        resp = await self.request("PATCH", path, mailbox=mailbox, body=body)
        return Message.model_validate(resp.json())

    async def add_message_categories(
        self, mailbox: str, message_id: str, names: list[str]
    ) -> Message:
        current = await self.get_message(mailbox, message_id)
        wanted = list(current.categories) + [n for n in names if n not in current.categories]
        if wanted == list(current.categories):
            return current
        return await self.set_message_categories(mailbox, message_id, wanted)

    # --- contacts -------------------------------------------------------------------------------
    def _contact_path(self, mailbox: str, contact_id: str | None = None) -> str:
        rb = self._user(mailbox).contacts
        return self._path(rb.by_contact_id(contact_id) if contact_id else rb)

    async def get_contact(self, mailbox: str, contact_id: str) -> Contact:
        """One contact with its Workbooks stamp expanded."""
        path = f"{self._contact_path(mailbox, contact_id)}?$expand={quote(payloads.ext_expand())}"
        resp = await self.request("GET", path, mailbox=mailbox)
        return Contact.model_validate(resp.json())

    async def create_contact(
        self, mailbox: str, contact: Contact, *, workbooks_id: str | int
    ) -> Contact:
        body = payloads.contact_body(
            contact, workbooks_id=workbooks_id, category=self.settings.category_name, partial=False
        )
        resp = await self.request("POST", self._contact_path(mailbox), mailbox=mailbox, body=body)
        return Contact.model_validate(resp.json())

    async def update_contact(
        self,
        mailbox: str,
        contact_id: str,
        changes: Contact,
        *,
        workbooks_id: str | int | None = None,
    ) -> Contact:
        """PATCH only the fields set on `changes` (include displayName, graph.md §4.2)."""
        body = payloads.contact_body(
            changes, workbooks_id=workbooks_id, category=self.settings.category_name, partial=True
        )
        path = self._contact_path(mailbox, contact_id)
        resp = await self.request("PATCH", path, mailbox=mailbox, body=body)
        return Contact.model_validate(resp.json())

    async def delete_contact(self, mailbox: str, contact_id: str) -> None:
        await self.request("DELETE", self._contact_path(mailbox, contact_id), mailbox=mailbox)

    # --- events ---------------------------------------------------------------------------------
    def _event_path(self, mailbox: str, event_id: str | None = None) -> str:
        rb = self._user(mailbox).events
        return self._path(rb.by_event_id(event_id) if event_id else rb)

    async def get_event(self, mailbox: str, event_id: str) -> Event:
        path = f"{self._event_path(mailbox, event_id)}?$expand={quote(payloads.ext_expand())}"
        resp = await self.request(
            "GET", path, mailbox=mailbox, prefer=(IMMUTABLE_IDS, UTC_TIMEZONE)
        )
        return Event.model_validate(resp.json())

    async def create_event(
        self,
        mailbox: str,
        event: Event,
        *,
        workbooks_id: str | int,
        transaction_id: str | None = None,
    ) -> Event:
        """Create without attendees, so no invitation is ever sent."""
        body = payloads.event_body(
            event,
            workbooks_id=workbooks_id,
            category=self.settings.category_name,
            partial=False,
            transaction_id=transaction_id,
        )
        resp = await self.request("POST", self._event_path(mailbox), mailbox=mailbox, body=body)
        return Event.model_validate(resp.json())

    async def update_event(
        self,
        mailbox: str,
        event_id: str,
        changes: Event,
        *,
        workbooks_id: str | int | None = None,
    ) -> Event:
        body = payloads.event_body(
            changes, workbooks_id=workbooks_id, category=self.settings.category_name, partial=True
        )
        path = self._event_path(mailbox, event_id)
        resp = await self.request("PATCH", path, mailbox=mailbox, body=body)
        return Event.model_validate(resp.json())

    async def delete_event(self, mailbox: str, event_id: str) -> None:
        # DELETE on an event the mailbox organises sends no cancellation when it has no
        # attendees, and we never write attendees.
        await self.request("DELETE", self._event_path(mailbox, event_id), mailbox=mailbox)

    # --- To Do ----------------------------------------------------------------------------------
    def _task_path(self, mailbox: str, list_id: str, task_id: str | None = None) -> str:
        rb = self._user(mailbox).todo.lists.by_todo_task_list_id(list_id).tasks
        return self._path(rb.by_todo_task_id(task_id) if task_id else rb)

    async def get_task(self, mailbox: str, list_id: str, task_id: str) -> TodoTask:
        path = f"{self._task_path(mailbox, list_id, task_id)}?$expand=linkedResources"
        resp = await self.request("GET", path, mailbox=mailbox)
        return TodoTask.model_validate(resp.json())

    async def create_task(
        self,
        mailbox: str,
        list_id: str,
        task: TodoTask,
        *,
        workbooks_id: str | int,
        display_name: str,
        web_url: str | None = None,
    ) -> TodoTask:
        """Create a task carrying `linkedResources[{applicationName: Workbooks, externalId}]`."""
        body = payloads.task_body(task, category=self.settings.category_name, partial=False)
        body["linkedResources"] = [
            payloads.linked_resource(workbooks_id, display_name=display_name, web_url=web_url)
        ]
        path = self._task_path(mailbox, list_id)
        resp = await self.request("POST", path, mailbox=mailbox, body=body)
        return TodoTask.model_validate(resp.json())

    async def update_task(
        self, mailbox: str, list_id: str, task_id: str, changes: TodoTask
    ) -> TodoTask:
        body = payloads.task_body(changes, category=self.settings.category_name, partial=True)
        path = self._task_path(mailbox, list_id, task_id)
        resp = await self.request("PATCH", path, mailbox=mailbox, body=body)
        return TodoTask.model_validate(resp.json())

    async def delete_task(self, mailbox: str, list_id: str, task_id: str) -> None:
        await self.request("DELETE", self._task_path(mailbox, list_id, task_id), mailbox=mailbox)

    # --- categories -----------------------------------------------------------------------------
    async def ensure_category(self, mailbox: str, name: str, color: str = "preset0") -> None:
        """Create `name` in the master category list unless it exists (graph.md §4.6)."""
        path = self._path(self._user(mailbox).outlook.master_categories)
        resp = await self.request("GET", path, mailbox=mailbox)
        names = {str(c.get("displayName", "")).lower() for c in resp.json().get("value", [])}
        if name.lower() not in names:
            body = {"displayName": name, "color": color}
            await self.request("POST", path, mailbox=mailbox, body=body)

    # --- subscriptions (raw JSON; the manager in sync.graph.subscriptions owns the policy) ------
    async def create_subscription(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /subscriptions with `Prefer: IdType="ImmutableId"` so notifications carry
        immutable ids (graph.md §1.11)."""
        resp = await self.request("POST", self._path(self.service.subscriptions), body=body)
        data: dict[str, Any] = resp.json()
        return data

    async def renew_subscription(self, subscription_id: str, expires: datetime) -> datetime:
        path = self._path(self.service.subscriptions.by_subscription_id(subscription_id))
        resp = await self.request("PATCH", path, body={"expirationDateTime": iso_utc(expires)})
        return parse_iso(resp.json()["expirationDateTime"])

    async def reauthorize_subscription(self, subscription_id: str) -> None:
        rb = self.service.subscriptions.by_subscription_id(subscription_id)
        await self.request("POST", f"{self._path(rb)}/reauthorize")

    async def delete_subscription(self, subscription_id: str) -> None:
        path = self._path(self.service.subscriptions.by_subscription_id(subscription_id))
        await self.request("DELETE", path)

    async def list_subscriptions(self) -> list[dict[str, Any]]:
        """Rate-limited hard by Graph (graph.md §1.4): for diagnostics, never for polling."""
        resp = await self.request("GET", self._path(self.service.subscriptions))
        value: list[dict[str, Any]] = resp.json().get("value", [])
        return value


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
