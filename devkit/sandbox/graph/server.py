"""The Graph sandbox as an aiohttp application: `create_app(config)`.

Request path for `/v1.0/...`: latency and fault injection -> bearer token check -> per-mailbox
throttle -> routes.  The token endpoint mimics Entra ID's client-credentials flow.  `/_sim/`
control endpoints exist only when `config.controls` is true.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import timedelta
from typing import Any

from aiohttp import web

from devkit.sandbox.graph import control, identity, permissions
from devkit.sandbox.graph.config import SandboxConfig
from devkit.sandbox.graph.mailbox_routes import MailboxApi
from devkit.sandbox.graph.service import Sandbox
from devkit.sandbox.graph.state import utcnow
from devkit.sandbox.graph.subscription_routes import handle as handle_subscriptions
from devkit.sandbox.graph.wire import GraphFailure, failure_response, graph_error, split_path

SANDBOX_KEY: web.AppKey[Sandbox] = web.AppKey("graph_sandbox", Sandbox)
# Graph's resource app id: the client_id Graph names in its 401 challenge.
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


def _sandbox(request: web.Request) -> Sandbox:
    return request.app[SANDBOX_KEY]


async def token_endpoint(request: web.Request) -> web.Response:
    """POST /{tenant}/oauth2/v2.0/token, grant_type=client_credentials (form-encoded), with a
    client secret or a client assertion (federated credential, see identity.py)."""
    sb = _sandbox(request)
    form = await request.post()
    client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
    if form.get("grant_type") != "client_credentials":
        return web.json_response(
            {"error": "unsupported_grant_type", "error_description": "AADSTS70003"}, status=400
        )
    if "client_assertion_type" in form or "client_assertion" in form:
        if form.get("client_assertion_type") != identity.JWT_BEARER:
            refused: str | None = "AADSTS50027: client_assertion_type is not jwt-bearer."
        else:
            refused = identity.assertion_error(
                request, client_id, str(form.get("client_assertion", ""))
            )
        if client_id not in sb.config.clients:
            refused = f"AADSTS700016: Application with identifier '{client_id}' was not found."
        if refused:
            return web.json_response(
                {"error": "invalid_client", "error_description": refused}, status=401
            )
    elif sb.config.clients.get(client_id) is None or not secrets.compare_digest(
        sb.config.clients[client_id], secret
    ):
        return web.json_response(
            {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
            },
            status=401,
        )
    lifetime = sb.config.token_lifetime_seconds
    roles = list(sb.config.app_roles)
    token = _access_token(request, client_id, str(form.get("scope", "")), roles, lifetime)
    sb.state.access_tokens[token] = utcnow() + timedelta(seconds=lifetime)
    sb.state.token_roles[token] = frozenset(roles)
    return web.json_response(
        {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }
    )


def _access_token(
    request: web.Request, client_id: str, scope: str, roles: list[str], lifetime: int
) -> str:
    """An app-only access token shaped like Entra ID's: a JWT whose ``roles`` claim lists the
    consented application permissions (absent when there are none), with ``aud`` the resource
    of the requested ``.default`` scope, ``appid``/``azp`` the client and ``idtyp`` "app".
    Signed with the sandbox's own key: only the sandbox verifies it; a client reads the claims
    without verifying, as it may for a token it got from the token endpoint over TLS."""
    now = int(time.time())
    tenant = request.match_info["tenant"]
    claims: dict[str, Any] = {
        "aud": scope.split()[0].removesuffix("/.default") if scope else GRAPH_APP_ID,
        "iss": identity.issuer(str(request.url.origin()), tenant),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "appid": client_id,
        "azp": client_id,
        "idtyp": "app",
        "tid": tenant,
        "uti": secrets.token_urlsafe(16),  # unique per token, as Entra's
    }
    if roles:
        claims["roles"] = roles
    return identity.sign(request.app[identity.SIGNING_KEY], claims)


async def openid_configuration(request: web.Request) -> web.Response:
    origin = str(request.url.origin())
    tenant = request.match_info["tenant"]
    return web.json_response(
        {
            "issuer": f"{origin}/{tenant}/v2.0",
            "token_endpoint": f"{origin}/{tenant}/oauth2/v2.0/token",
            "authorization_endpoint": f"{origin}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "tenant_region_scope": "WW",
        }
    )


def _challenge(request: web.Request) -> dict[str, str]:
    """Graph answers every 401 with a Bearer challenge naming where to get a token (public
    captures: `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/
    oauth2/authorize", client_id="00000003-..."`).  The sandbox names its own authority."""
    authorize = f"{request.url.origin()}/common/oauth2/authorize"
    value = f'Bearer realm="", authorization_uri="{authorize}", client_id="{GRAPH_APP_ID}"'
    return {"WWW-Authenticate": value}


def _auth_error(sb: Sandbox, request: web.Request) -> web.Response | None:
    header = request.headers.get("Authorization", "")
    challenge = _challenge(request)
    token = header[7:].strip()
    if not header.lower().startswith("bearer ") or not token:
        return graph_error(401, "InvalidAuthenticationToken", "Access token is empty.", challenge)
    request[permissions.ROLES_KEY] = sb.state.token_roles.get(token, frozenset())
    expires = sb.state.access_tokens.get(token)
    if expires is None:
        return graph_error(
            401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.", challenge
        )
    if expires <= utcnow():
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            "Lifetime validation failed, the token is expired.",
            challenge,
        )
    return None


async def graph_route(request: web.Request) -> web.StreamResponse:
    sb = _sandbox(request)
    sb.requests.append((request.method, request.path_qs, request.headers.copy()))
    fault = sb.take_fault(request.method, request.path)
    if fault is not None:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            if fault.status == 401:
                headers.update(_challenge(request))
            code = fault.code or _default_code(fault.status)
            return graph_error(fault.status, code, "Injected fault.", headers or None)
    denied = _auth_error(sb, request)
    if denied is not None:
        return denied
    segs = split_path(request.match_info["tail"])
    try:
        if segs and segs[0].lower() == "subscriptions":
            await _latency(sb)
            return await handle_subscriptions(sb, request, segs)
        if len(segs) >= 3 and segs[0].lower() == "users":
            return await _mailbox_request(sb, request, segs)
        raise GraphFailure(400, "BadRequest", "Unsupported resource path.")
    except GraphFailure as exc:
        return failure_response(exc)


async def _mailbox_request(
    sb: Sandbox, request: web.Request, segs: list[str]
) -> web.StreamResponse:
    box = sb.state.mailbox(segs[1])
    if box is None:
        raise GraphFailure(404, "ErrorInvalidUser", f"The requested user '{segs[1]}' is invalid.")
    permissions.check_request(
        permissions.family_of(segs[2:]),
        request.method != "GET",
        request.get(permissions.ROLES_KEY, frozenset()),
        sb.config.access_policy,
        box.upn,
        box.user_id,
    )
    retry_after = sb.throttle.enter(box.user_id)
    if retry_after is not None:
        sb.throttled += 1
        return graph_error(
            429,
            "ApplicationThrottled",
            "Application is over its MailboxConcurrency limit.",
            {"Retry-After": str(retry_after)},
        )
    try:
        await _latency(sb)  # inside the slot: a slow reply occupies concurrency, as in Exchange
        return await MailboxApi(sb, request, box).dispatch(segs[2:])
    finally:
        sb.throttle.leave(box.user_id)


async def _latency(sb: Sandbox) -> None:
    if sb.config.latency_seconds:
        await asyncio.sleep(sb.config.latency_seconds)


def _default_code(status: int) -> str:
    return {
        401: "InvalidAuthenticationToken",
        429: "TooManyRequests",
        500: "InternalServerError",
        502: "BadGateway",
        503: "ServiceUnavailable",
        504: "GatewayTimeout",
    }.get(status, "UnknownError")


def create_app(config: SandboxConfig | None = None) -> web.Application:
    """The sandbox app. Controls (/_sim/) are off unless `config.controls` is set."""
    cfg = config or SandboxConfig()
    sandbox = Sandbox(cfg)
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[SANDBOX_KEY] = sandbox
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token_endpoint)
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration)
    identity.add_routes(app, cfg)
    app.router.add_route("*", "/v1.0/{tail:.*}", graph_route)
    if cfg.controls:
        control.add_routes(app, sandbox)

    async def lifecycle(_app: web.Application) -> Any:
        await sandbox.notifier.start()
        yield
        await sandbox.notifier.close()

    app.cleanup_ctx.append(lifecycle)
    return app
