"""The console's HTTP functions and its small router.

Three functions serve everything under ``/api/console``: ``console_page`` (GET),
``console_action`` (POST) and ``console_static`` (the stylesheet and htmx).  They are anonymous
at the Functions level because a browser cannot send a function key: App Service Authentication
signs people in before a request reaches the app (infra/main.bicep), and this module checks, on
every route, who is asking and what they may see:

* ``admin`` routes need the ``SyncCenter.Admin`` app role;
* ``owner`` routes name a mailbox (or a job of one) that must be the person's own, unless they
  are an admin; someone else's mailbox answers 403 whether or not it exists;
* every POST carries the CSRF token (``sync.console.web``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, Literal
from urllib.parse import unquote, urlencode, urlsplit

import azure.functions as func
from azure.core.exceptions import AzureError
from pydantic import ValidationError

from sync.core.doctor import ESSENTIAL
from sync.core.email_linking import RecordRef, parse_reference
from sync.core.errors import InvalidRequest, NotFound, ReauthRequired, RetryLater, SyncError
from sync.core.keys import normalise_address
from sync.core.state_models import JobStatus, Mailbox, MailboxPolicy, utcnow
from sync.runtime import Services, get_services

from . import actions, data, policy
from .auth import (
    PRINCIPAL_HEADER,
    FrontDoor,
    Mode,
    PrincipalError,
    Viewer,
    front_door,
    parse_principal,
    tenant_problem,
)
from .health import STREAM_LABELS, Health, ordered
from .views import render
from .web import (
    PAGE_HEADERS,
    Csrf,
    Form,
    FormError,
    csrf_for,
    csrf_ok,
    is_https,
    page,
    read_form,
    redirect,
)
from .words import status

log = logging.getLogger("sync.console")
bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions is untyped

BASE = "/api/console"
PAGE_SIZE = 25
LINK_COUNT_CAP = 1000
EMAIL_DAYS = (7, 30, 90)
Access = Literal["admin", "owner", "signed_in"]
NOTICES = {
    "registered": "Mailbox registered, paused. Run its checks and enable it.",
    "saved": "Settings saved. They apply from the next sync.",
    "saved-scope": "Settings saved. The new filters apply from the next full sync.",
    "paused": "Mailbox paused: its change notifications are deleted and nothing syncs.",
    "removed": "Mailbox removed.",
    "attached": "Attached. The email is linked to the record.",
    "attach-queued": "The mailbox is busy syncing: the attachment is queued and happens shortly.",
    "requeued": "Moved {n} message(s) from the poison queue back to the jobs queue.",
    "purged": "Purged {n} message(s) from the poison queue.",
    "limits": "Self-service limits saved.",
}


# ------------------------------------------------------------------------ request context


@dataclass
class Ctx:
    req: func.HttpRequest
    services: Services
    viewer: Viewer
    door: FrontDoor
    csrf: Csrf
    args: dict[str, str]
    form: Form = field(default_factory=Form)
    mailbox: Mailbox | None = None
    job: JobStatus | None = None
    now: datetime = field(default_factory=utcnow)

    @property
    def https(self) -> bool:
        return is_https(self.req)

    @property
    def htmx(self) -> bool:
        return (self.req.headers.get("hx-request") or "").lower() == "true"

    @property
    def mb(self) -> Mailbox:
        assert self.mailbox is not None, "owner routes load their mailbox"
        return self.mailbox

    def param(self, name: str, default: str = "", limit: int = 500) -> str:
        return (self.req.params.get(name) or default)[:limit]

    def render(self, template: str, code: int = 200, **context: Any) -> func.HttpResponse:
        done = self.param("done", limit=40)
        notice = NOTICES.get(done, "")
        if "{n}" in notice:  # a count, and only a count, comes from the address
            count = self.param("n", limit=9)
            notice = notice.replace("{n}", str(int(count)) if count.isdigit() else "some")
        body = render(
            template,
            viewer=self.viewer,
            csrf_token=self.csrf.token,
            logout_url=self.door.logout_url,
            now=self.now,
            notice=context.pop("notice", notice),
            notice_tone=context.pop("notice_tone", "ok"),
            nav=context.pop("nav", ""),
            **context,
        )
        return page(body, code, csrf=self.csrf, https=self.https)

    def message(self, code: int, title: str, *lines: str) -> func.HttpResponse:
        return self.render("message.html", code, title=title, lines=list(lines), back="")

    def url(self, *parts: str, **query: str) -> str:
        from .views import url_part

        path = "/".join([BASE, *(url_part(p) for p in parts)])
        wanted = {k: v for k, v in query.items() if v}
        return f"{path}?{urlencode(wanted)}" if wanted else path


Handler = Callable[[Ctx], Awaitable[func.HttpResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    access: Access


ROUTES: list[Route] = []


def route(method: str, template: str, access: Access) -> Callable[[Handler], Handler]:
    """``mailboxes/{mb}/runs`` -> a pattern with named groups (one path segment each)."""
    regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"

    def add(handler: Handler) -> Handler:
        ROUTES.append(Route(method, template, re.compile(regex), handler, access))
        return handler

    return add


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for r in ROUTES:
        found = r.pattern.match(path)
        if found and r.method == method:
            return r, {k: unquote(v) for k, v in found.groupdict().items()}
    return None


# ------------------------------------------------------------------------ the functions


@bp.function_name("console_page")
@bp.route(route="console/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def console_page(req: func.HttpRequest) -> func.HttpResponse:
    return await dispatch(req)


@bp.function_name("console_action")
@bp.route(route="console/{*path}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def console_action(req: func.HttpRequest) -> func.HttpResponse:
    return await dispatch(req)


STATIC = {"console.css": "text/css", "htmx.min.js": "text/javascript"}


@bp.function_name("console_static")
@bp.route(route="console/static/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def console_static(req: func.HttpRequest) -> func.HttpResponse:
    """The stylesheet and htmx: public files, no data (no sign-in needed to fetch them)."""
    name = req.route_params.get("name", "")
    if name not in STATIC:
        return func.HttpResponse("not found", status_code=404, headers=dict(PAGE_HEADERS))
    body = _static(name)
    headers = {**PAGE_HEADERS, "Cache-Control": "public, max-age=3600"}
    return func.HttpResponse(body, status_code=200, mimetype=STATIC[name], headers=headers)


_static_cache: dict[str, bytes] = {}


def _static(name: str) -> bytes:
    if name not in _static_cache:
        _static_cache[name] = (resources.files("sync.console") / "static" / name).read_bytes()
    return _static_cache[name]


def _bare(status: int, title: str, *lines: str, login_url: str = "") -> func.HttpResponse:
    body = render("bare.html", title=title, lines=list(lines), login_url=login_url)
    return page(body, status)


def _back_to(req: func.HttpRequest) -> str:
    parts = urlsplit(str(req.url))
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def dispatch(req: func.HttpRequest) -> func.HttpResponse:
    door = front_door()
    if door.mode is Mode.OFF:
        return _bare(503, "Sign-in is not available", door.problem)
    header = req.headers.get(PRINCIPAL_HEADER)
    if not header:
        if req.method == "GET":
            return redirect(door.login_url(_back_to(req)), 302)
        return _bare(
            401, "Please sign in", "Your session has ended.", login_url=door.login_url(BASE)
        )
    try:
        viewer = parse_principal(header)
    except PrincipalError as exc:
        return _bare(400, "Your sign-in could not be read", str(exc))
    try:
        services = await get_services()
    except AzureError:
        return _bare(503, "Storage is unavailable", "Try again in a moment.")
    problem = tenant_problem(viewer, services.settings.graph.tenant_id)
    if problem:
        return _bare(403, "Not allowed", problem, "Sign out and sign in with your work account.")
    path = req.route_params.get("path", "").strip("/")
    found = match(req.method.upper(), path)
    ctx = Ctx(req, services, viewer, door, csrf_for(req), {})
    if found is None:
        return ctx.message(404, "Page not found", "There is no such page in Sync Center.")
    spec, ctx.args = found
    try:
        refused = await _authorise(ctx, spec)
        if refused is not None:
            return refused
        if req.method.upper() == "POST":
            ctx.form = read_form(req)
            if not csrf_ok(req, ctx.form.values):
                return ctx.message(
                    403,
                    "The form has expired",
                    "Reload the page and try again. (The request did not carry this page's "
                    "security token, or came from another site.)",
                )
        return await spec.handler(ctx)
    except FormError as exc:
        return ctx.message(exc.status, "The form could not be read", str(exc))
    except RetryLater as exc:
        return ctx.message(
            503, "Busy", f"{exc.source or 'A service'} asked us to wait: try again in a moment."
        )
    except ReauthRequired as exc:
        return ctx.message(502, "Sign-in to a service failed", str(exc))
    except AzureError:
        log.warning("console: storage unavailable for %s %s", req.method, path, exc_info=True)
        return ctx.message(503, "Storage is unavailable", "Try again in a moment.")


async def _authorise(ctx: Ctx, spec: Route) -> func.HttpResponse | None:
    viewer = ctx.viewer
    if spec.access == "admin" and not viewer.is_admin:
        return ctx.message(403, "Not allowed", "This page is for Sync Center administrators.")
    if spec.access != "owner":
        return None
    refused = ctx.message(
        403,
        "Not allowed",
        "You can only see and change your own mailbox.",
        "Open “My sync” instead.",
    )
    mailbox_id = ctx.args.get("mb")
    if "job" in ctx.args:
        ctx.job = await ctx.services.store.jobs.get(ctx.args["job"])
        if ctx.job is None:
            return ctx.message(404, "No such sync") if viewer.is_admin else refused
        mailbox_id = ctx.job.mailbox
    ctx.mailbox = await ctx.services.store.mailboxes.get(mailbox_id or "")
    if ctx.mailbox is None:
        if viewer.is_admin:
            return ctx.message(404, "No such mailbox", f"{mailbox_id} is not registered.")
        return refused
    if not viewer.is_admin and not viewer.owns(ctx.mailbox):
        log.warning("console: %s was refused mailbox %s", viewer.name, ctx.mailbox.id)
        return refused
    return None


# ------------------------------------------------------------------------ home


@route("GET", "", "signed_in")
async def home(ctx: Ctx) -> func.HttpResponse:
    return redirect(ctx.url("mailboxes") if ctx.viewer.is_admin else ctx.url("me"))


@route("GET", "me", "signed_in")
async def me(ctx: Ctx) -> func.HttpResponse:
    reads = data.Reads(ctx.services)
    mailbox = await reads.mailbox_for_viewer(ctx.viewer.name, ctx.viewer.object_id)
    if mailbox is None or not ctx.viewer.owns(mailbox):
        return ctx.render(
            "message.html",
            404,
            nav="me",
            title="No mailbox for you yet",
            lines=[
                f"No mailbox is registered for {ctx.viewer.name}.",
                "Ask your Sync Center administrator to add it.",
            ],
            back="",
        )
    return redirect(ctx.url("mailboxes", mailbox.id))


# ------------------------------------------------------------------------ admin: the list


@route("GET", "mailboxes", "admin")
async def mailboxes(ctx: Ctx) -> func.HttpResponse:
    snapshot = await data.list_snapshot(ctx.services, now=ctx.now)
    q, wanted = ctx.param("q", limit=200), ctx.param("health", limit=20)
    if wanted not in {h.value for h in Health}:
        wanted = ""
    rows = data.select(snapshot, text=q, health=wanted)
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    number = int(ctx.param("page", "1")) if ctx.param("page", "1").isdigit() else 1
    number = min(max(number, 1), pages)
    shown = rows[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    await data.fill_page(ctx.services, snapshot, shown)

    def query(n: int) -> str:
        return urlencode({k: v for k, v in {"q": q, "health": wanted, "page": str(n)}.items() if v})

    return ctx.render(
        "mailboxes.html",
        nav="mailboxes",
        rows=shown,
        total=len(snapshot.rows),
        matched=len(rows),
        counts=snapshot.counts(),
        healths=list(Health),
        q=q,
        health_filter=wanted,
        page=number,
        pages=pages,
        query=query,
        queue_depth=snapshot.queue_depth,
        poison_depth=snapshot.poison_depth,
    )


@route("GET", "mailboxes/new", "admin")
async def new_mailbox(ctx: Ctx) -> func.HttpResponse:
    return ctx.render("mailbox_new.html", nav="mailboxes", values={}, errors={})


NEW_FIELDS = ("mailbox", "workbooks_url", "api_key_ref", "workbooks_user", "graph_user")


@route("POST", "mailboxes", "admin")
async def create_mailbox(ctx: Ctx) -> func.HttpResponse:
    values = {name: ctx.form.get(name).strip() for name in NEW_FIELDS}
    errors: dict[str, str] = {}
    try:
        mailbox = Mailbox(
            id=values["mailbox"],
            workbooks_url=values["workbooks_url"],
            api_key_ref=values["api_key_ref"],
            workbooks_user=values["workbooks_user"],
            graph_user=values["graph_user"],
            policy=MailboxPolicy(),
        )
    except ValidationError as exc:
        for err in exc.errors():
            name = (
                {"id": "mailbox"}.get(str(err["loc"][0]), str(err["loc"][0]))
                if err["loc"]
                else "form"
            )
            errors.setdefault(name, str(err["msg"]).removeprefix("Value error, "))
        if "api_key_ref" in errors:
            values["api_key_ref"] = (
                ""  # a rejected reference is often the key itself: never echo it
            )
        return ctx.render("mailbox_new.html", 400, nav="mailboxes", values=values, errors=errors)
    outcome = await actions.add_mailbox(ctx.services, mailbox)
    if not outcome.ok:
        errors["mailbox"] = "; ".join(outcome.lines)
        return ctx.render("mailbox_new.html", 409, nav="mailboxes", values=values, errors=errors)
    return redirect(ctx.url("mailboxes", mailbox.id, done="registered"))


# ------------------------------------------------------------------------ one mailbox


@route("GET", "mailboxes/{mb}", "owner")
async def mailbox_page(ctx: Ctx) -> func.HttpResponse:
    if ctx.viewer.is_admin:
        detail = await data.mailbox_detail(ctx.services, ctx.mb, now=ctx.now)
        return ctx.render(
            "mailbox_admin.html",
            nav="mailboxes",
            mb=ctx.mb,
            detail=detail,
            streams=ordered(detail.row.streams),
            runs=detail.runs[:15],
        )
    reads = data.Reads(ctx.services)
    days = 30
    detail, emails, linked_items = await asyncio.gather(
        data.mailbox_detail(ctx.services, ctx.mb, now=ctx.now),
        reads.emails(ctx.mb.id, ctx.now - timedelta(days=days), limit=500),
        _linked_counts(reads, ctx.mb.id),
    )
    needs_you = sum(n["ambiguous"] + n["duplicate"] for n in detail.items.values())
    return ctx.render(
        "mailbox_user.html",
        nav="me",
        mb=ctx.mb,
        status=status(detail.row, ctx.now),
        linked=[e for e in emails if e.state == "linked"][:10],
        linked_items=linked_items,
        link_count_cap=LINK_COUNT_CAP,
        conflicts=detail.conflicts[:10],
        needs_you=needs_you,
        days=days,
    )


async def _linked_counts(reads: data.Reads, mailbox: str) -> dict[str, int]:
    """Linked items per two-way stream, counted up to ``LINK_COUNT_CAP`` (one page of keys:
    Table Storage has no count, and a large mailbox's links would take a page per 1,000)."""
    from sync.core.keys import encode_key
    from sync.status import TWO_WAY_STREAMS

    async def count(stream: str) -> int:
        rows = await reads.rows(
            "links",
            "PartitionKey eq @pk and RowKey ge 'o:' and RowKey lt 'o;'",
            {"pk": f"{encode_key(mailbox)}|{stream}"},
            select=["RowKey"],
            limit=LINK_COUNT_CAP,
        )
        return len(rows)

    counts = await asyncio.gather(*(count(s) for s in TWO_WAY_STREAMS))
    return dict(zip(TWO_WAY_STREAMS, counts, strict=True))


@route("GET", "mailboxes/{mb}/settings", "owner")
async def settings_page(ctx: Ctx) -> func.HttpResponse:
    names, limits = await _editable(ctx)
    values = {spec.name: policy.form_value(spec, ctx.mb.policy) for spec in policy.specs(names)}
    return _settings(ctx, names, limits, values, {})


async def _editable(ctx: Ctx) -> tuple[tuple[str, ...], policy.Limits]:
    limits = await policy.load_limits(ctx.services)
    return (policy.admin_fields() if ctx.viewer.is_admin else limits.editable()), limits


def _settings(
    ctx: Ctx,
    names: tuple[str, ...],
    limits: policy.Limits,
    values: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
) -> func.HttpResponse:
    fields = policy.specs(names)
    for spec in fields:
        if spec.kind == "rules":
            values[spec.name] = policy.rule_rows(values.get(spec.name))
    return ctx.render(
        "settings.html",
        status_code,
        nav="mailboxes" if ctx.viewer.is_admin else "me",
        mb=ctx.mb,
        fields=fields,
        field_names=[f.name for f in fields],
        labels={f.name: f.label for f in fields},
        values=values,
        errors=errors,
        ops=policy.FILTER_OPS,
        admin_view=ctx.viewer.is_admin,
        groups=policy.describe_groups(limits),
        schedules_exist=bool(policy.schedule_fields()),
        loaded_at=ctx.mb.updated_at.isoformat(),
    )


@route("POST", "mailboxes/{mb}/settings", "owner")
async def save_settings(ctx: Ctx) -> func.HttpResponse:
    names, limits = await _editable(ctx)
    parsed = policy.parse(ctx.form, names)
    cap = None if ctx.viewer.is_admin else limits.max_people_filters
    new = policy.validate(ctx.mb.policy, parsed, max_people_filters=cap)
    if new is None:
        return _settings(ctx, names, limits, dict(parsed.shown), parsed.errors, 400)
    try:
        loaded = datetime.fromisoformat(ctx.form.get("loaded_at"))
    except ValueError:
        loaded = None
    try:
        await actions.save_policy(ctx.services, ctx.mb.id, new, loaded)
    except actions.EditConflict:
        fresh = await ctx.services.store.mailboxes.get(ctx.mb.id)
        ctx.mailbox = fresh or ctx.mailbox
        values = {spec.name: policy.form_value(spec, ctx.mb.policy) for spec in policy.specs(names)}
        errors = {
            "form": "Someone changed this mailbox after you opened the page; here it is now. Make your change again."
        }
        return _settings(ctx, names, limits, values, errors, 409)
    changed = policy.changed_fields(ctx.mb.policy, new)
    done = "saved-scope" if policy.changed_scope(changed) else "saved"
    return redirect(ctx.url("mailboxes", ctx.mb.id, done=done))


@route("POST", "mailboxes/{mb}/check", "admin")
async def check(ctx: Ctx) -> func.HttpResponse:
    return await _checks_page(ctx, want_enable=False)


@route("POST", "mailboxes/{mb}/enable", "admin")
async def enable(ctx: Ctx) -> func.HttpResponse:
    return await _checks_page(ctx, want_enable=True)


async def _load(ctx: Ctx) -> None:
    """Admin routes that name a mailbox load it here (owner routes already did)."""
    if ctx.mailbox is None:
        ctx.mailbox = await ctx.services.store.mailboxes.get(ctx.args.get("mb", ""))


async def _checks_page(ctx: Ctx, *, want_enable: bool) -> func.HttpResponse:
    await _load(ctx)
    if ctx.mailbox is None:
        return ctx.message(404, "No such mailbox", f"{ctx.args.get('mb')} is not registered.")
    force = want_enable and ctx.form.get("force") == "1"
    report = None if force else await actions.live_checks(ctx.services, ctx.mb)
    allowed = report is None or actions.may_enable(report)
    lines: list[str] = []
    job = None
    if want_enable and allowed:
        if force:
            log.warning("console: %s enabled %s without its checks", ctx.viewer.name, ctx.mb.id)
        outcome = await actions.enable(ctx.services, ctx.mb.id)
        lines, job = outcome.lines, outcome.job
        ctx.mailbox = outcome.mailbox or ctx.mailbox
    return ctx.render(
        "checks.html",
        nav="mailboxes",
        mb=ctx.mb,
        report=report,
        checks=report.checks if report else (),
        essential=ESSENTIAL,
        allowed=allowed,
        failed=len(report.failures) if report else 0,
        wanted_enable=want_enable,
        enabled=want_enable and ctx.mb.enabled,
        lines=lines,
        job=job,
    )


@route("POST", "mailboxes/{mb}/disable", "admin")
async def disable(ctx: Ctx) -> func.HttpResponse:
    reason = " ".join(ctx.form.get("reason").split())[:200] or "paused by an administrator"
    outcome = await actions.disable(ctx.services, ctx.args["mb"], reason)
    if not outcome.ok:
        return ctx.message(404, "No such mailbox", *outcome.lines)
    return redirect(ctx.url("mailboxes", ctx.args["mb"], done="paused"))


@route("GET", "mailboxes/{mb}/remove", "admin")
async def remove_page(ctx: Ctx) -> func.HttpResponse:
    await _load(ctx)
    if ctx.mailbox is None:
        return ctx.message(404, "No such mailbox", f"{ctx.args.get('mb')} is not registered.")
    return ctx.render("remove.html", nav="mailboxes", mb=ctx.mb, errors={})


@route("POST", "mailboxes/{mb}/remove", "admin")
async def remove(ctx: Ctx) -> func.HttpResponse:
    await _load(ctx)
    if ctx.mailbox is None:
        return ctx.message(404, "No such mailbox", f"{ctx.args.get('mb')} is not registered.")
    if normalise_address(ctx.form.get("confirm")) != ctx.mb.id:
        errors = {"confirm": f"Type {ctx.mb.id} exactly to remove it."}
        return ctx.render("remove.html", 400, nav="mailboxes", mb=ctx.mb, errors=errors)
    outcome = await actions.remove(ctx.services, ctx.mb.id)
    if not outcome.ok:
        return ctx.message(409, "Not removed", *outcome.lines)
    return redirect(ctx.url("mailboxes", done="removed"))


@route("POST", "mailboxes/{mb}/sync", "owner")
async def sync_now(ctx: Ctx) -> func.HttpResponse:
    kind = ctx.form.get("kind", "full")
    restore = ctx.form.get("restore_removed") == "1"
    if not ctx.viewer.is_admin and (kind != "full" or restore):
        return ctx.message(
            403, "Not allowed", "You can start a normal sync; ask an administrator for others."
        )
    if restore and kind != "resync":
        return ctx.message(
            400, "Not started", "Restoring removed items goes with a resync: choose “resync”."
        )
    try:
        job = await actions.manual_sync(ctx.services, ctx.mb, kind, restore_removed=restore)
    except InvalidRequest as exc:
        return ctx.message(409, "Not started", str(exc))
    return redirect(ctx.url("jobs", job.job_id))


@route("GET", "jobs/{job}", "owner")
async def job_page(ctx: Ctx) -> func.HttpResponse:
    return ctx.render("job.html", nav="mailboxes" if ctx.viewer.is_admin else "me", job=ctx.job)


@route("GET", "jobs/{job}/progress", "owner")
async def job_progress(ctx: Ctx) -> func.HttpResponse:
    # 286 tells htmx to stop polling once the sync has finished.
    finished = ctx.job is not None and ctx.job.state in ("done", "failed")
    body = render("_progress.html", job=ctx.job, now=ctx.now, BASE=BASE)
    return page(body, 286 if finished and ctx.htmx else 200)


@route("GET", "mailboxes/{mb}/runs", "owner")
async def runs(ctx: Ctx) -> func.HttpResponse:
    stream = ctx.param("stream", limit=40)
    if stream not in STREAM_LABELS:
        stream = ""
    found = await data.Reads(ctx.services).runs(ctx.mb.id, stream=stream or None, limit=100)
    return ctx.render("runs.html", nav=_nav(ctx), mb=ctx.mb, runs=found, stream=stream)


def _nav(ctx: Ctx) -> str:
    return "mailboxes" if ctx.viewer.is_admin else "me"


@route("GET", "mailboxes/{mb}/items", "owner")
async def items(ctx: Ctx) -> func.HttpResponse:
    from sync.status import two_way_items

    report = await two_way_items(ctx.services, ctx.mb.id)
    recent = await data.Reads(ctx.services).runs(ctx.mb.id, limit=200)
    return ctx.render(
        "items.html", nav=_nav(ctx), mb=ctx.mb, report=report, conflicts=data.conflicts_in(recent)
    )


# ------------------------------------------------------------------------ emails


@dataclass
class Search:
    q: str = ""
    message_id: str = ""
    result: Any = None
    error: str = ""
    short: bool = False


async def _search(ctx: Ctx) -> Search:
    from sync.engine.clients import workbooks_client
    from sync.secrets import SecretError
    from sync.workbooks.search import MIN_CHARS, SearchResult, search

    found = Search(
        q=ctx.param("q", limit=100).strip(), message_id=ctx.param("message_id", limit=1000)
    )
    found.result = SearchResult()
    if len(found.q) < MIN_CHARS and parse_reference(found.q) is None:
        found.short = True
        return found
    try:
        client = await workbooks_client(ctx.services, ctx.mb)
        found.result = await search(client, found.q)
    except SecretError:
        found.error = (
            "The Workbooks API key of this mailbox cannot be read; ask your administrator."
        )
    except RetryLater:
        found.error = "Workbooks is busy; try again in a moment."
    except SyncError as exc:
        found.error = f"Workbooks did not answer the search: {exc}"
    return found


@route("GET", "mailboxes/{mb}/search", "owner")
async def search_records(ctx: Ctx) -> func.HttpResponse:
    found = await _search(ctx)
    if ctx.htmx:
        body = render("_search.html", search=found, mb=ctx.mb, csrf_token=ctx.csrf.token, BASE=BASE)
        return page(body, csrf=ctx.csrf, https=ctx.https)
    return await _emails(ctx, message_id=found.message_id, search=found)


@route("GET", "mailboxes/{mb}/emails", "owner")
async def emails(ctx: Ctx) -> func.HttpResponse:
    return await _emails(ctx, message_id=ctx.param("id", limit=1000).strip())


async def _emails(
    ctx: Ctx,
    *,
    message_id: str,
    search: Search | None = None,
    attach_error: str = "",
    status_code: int = 200,
) -> func.HttpResponse:
    from sync.engine.emails import find_record

    days = int(ctx.param("days", "30")) if ctx.param("days", "30").isdigit() else 30
    days = days if days in EMAIL_DAYS else 30
    limit = 500
    found = await data.Reads(ctx.services).emails(
        ctx.mb.id, ctx.now - timedelta(days=days), limit=limit
    )
    subject = ctx.param("filter", limit=200).strip().lower()
    listed = [e for e in found if subject in e.subject.lower()] if subject else found
    record = await find_record(ctx.services, ctx.mb.id, message_id) if message_id else None
    lookup_error = ""
    if message_id and record is None:
        lookup_error = "No processed sent message with that id in this mailbox."
    return ctx.render(
        "emails.html",
        status_code,
        nav=_nav(ctx),
        mb=ctx.mb,
        emails=listed[:100],
        capped=len(listed) > 100 or len(found) >= limit,
        days=days,
        message_id=message_id,
        subject_filter=ctx.param("filter", limit=200),
        record=record,
        lookup_error=lookup_error,
        attach_error=attach_error,
        search=search,
        q=search.q if search else "",
    )


def _target(form: Form) -> RecordRef | str:
    """The record to attach to, or why the form does not name one."""
    from sync.workbooks.schema import LINK_TARGETS

    text = form.get("record").strip()
    if text:
        ref = parse_reference(text)
        return (
            ref
            if ref is not None
            else f"“{text[:40]}” is not an object reference such as CASE-123."
        )
    record_type, record_id = form.get("record_type"), form.get("record_id")
    if record_type in LINK_TARGETS and record_id.isdigit() and int(record_id) > 0:
        return RecordRef(record_type, int(record_id))
    return "Give an object reference such as CASE-123, or pick a record from the search."


@route("POST", "mailboxes/{mb}/emails/attach", "owner")
async def attach(ctx: Ctx) -> func.HttpResponse:
    message_id = ctx.form.get("message_id").strip()[:1000]
    if not message_id:
        return ctx.message(400, "Not attached", "Choose an email first.")
    target = _target(ctx.form)
    if isinstance(target, str):
        return await _emails(ctx, message_id=message_id, attach_error=target, status_code=400)
    try:
        done = await actions.attach(ctx.services, ctx.mb, message_id, target)
    except NotFound as exc:
        return await _emails(ctx, message_id=message_id, attach_error=str(exc), status_code=404)
    if done.state == "failed":
        return await _emails(ctx, message_id=message_id, attach_error=done.message, status_code=409)
    code = "attached" if done.state == "linked" else "attach-queued"
    return redirect(ctx.url("mailboxes", ctx.mb.id, "emails", id=message_id, done=code))


# ------------------------------------------------------------------------ poison queue


@route("GET", "poison", "admin")
async def poison(ctx: Ctx) -> func.HttpResponse:
    queue = ctx.services.queue
    messages = await queue.peek_poison(32)
    depth = await queue.poison_depth()
    return ctx.render(
        "poison.html", nav="poison", messages=messages, depth=depth, name=queue.poison_name
    )


@route("POST", "poison/requeue", "admin")
async def poison_requeue(ctx: Ctx) -> func.HttpResponse:
    moved = await ctx.services.queue.requeue_poison()
    log.info("console: %s requeued %d poison message(s)", ctx.viewer.name, moved)
    return redirect(ctx.url("poison", done="requeued", n=str(moved)))


@route("POST", "poison/purge", "admin")
async def poison_purge(ctx: Ctx) -> func.HttpResponse:
    if ctx.form.get("sure") != "1":
        return ctx.message(400, "Not purged", "Tick the box to confirm that purged jobs are gone.")
    purged = await ctx.services.queue.purge_poison()
    log.info("console: %s purged %d poison message(s)", ctx.viewer.name, purged)
    return redirect(ctx.url("poison", done="purged", n=str(purged)))


# ------------------------------------------------------------------------ self-service limits

GROUP_HELP = {
    "email": "Whether shared-only or every email to a known contact is filed; the category; "
    "internal domains and blocked addresses.",
    "people": "Which Workbooks People sync to their Outlook contacts.",
    "schedules": "How often their mailbox syncs (when the service offers per-person schedules).",
}


@route("GET", "self-service", "admin")
async def limits_page(ctx: Ctx) -> func.HttpResponse:
    limits = await policy.load_limits(ctx.services)
    return _limits(ctx, limits, {})


def _limits(
    ctx: Ctx, limits: policy.Limits, errors: dict[str, str], code: int = 200
) -> func.HttpResponse:
    return ctx.render(
        "limits.html",
        code,
        nav="limits",
        limits=limits,
        errors=errors,
        group_labels=policy.GROUP_LABELS,
        group_help=GROUP_HELP,
    )


@route("POST", "self-service", "admin")
async def save_limits(ctx: Ctx) -> func.HttpResponse:
    raw = ctx.form.get("max_people_filters").strip()
    try:
        limits = policy.Limits(
            groups=[g for g in ctx.form.all("groups") if g in policy.GROUP_LABELS],
            max_people_filters=int(raw) if raw.isdigit() else -1,
        )
    except ValidationError:
        current = await policy.load_limits(ctx.services)
        return _limits(ctx, current, {"max_people_filters": "Enter a number from 0 to 50."}, 400)
    await policy.save_limits(ctx.services, limits)
    return redirect(ctx.url("self-service", done="limits"))
