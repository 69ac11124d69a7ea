"""Managed identity and federated credentials, as far as the token endpoint needs them.

Two public protocols, kept small:

* the App Service managed identity endpoint that Azure Functions exposes to the app
  (``GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=...&client_id=...`` with header
  ``X-IDENTITY-HEADER: $IDENTITY_HEADER``; JSON ``access_token``, ``expires_on`` (epoch seconds),
  ``resource``, ``token_type``, ``client_id``), served at ``/msi/token``;
* a client assertion at the token endpoint (``client_assertion_type =
  urn:ietf:params:oauth:client-assertion-type:jwt-bearer``), accepted when it is a token this
  sandbox issued, unexpired, for audience ``api://AzureADTokenExchange``, from this tenant's
  issuer, and its subject is a managed identity the app registration has a federated
  credential for (``SandboxConfig.federated_credentials``).

Tokens are JWTs signed with an HMAC key that lives only in this process: the sandbox is their
only reader, so nobody else needs to verify them. Error codes follow Entra ID's (AADSTS...).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from aiohttp import web

from devkit.sandbox.graph.config import SandboxConfig

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNING_KEY: web.AppKey[bytes] = web.AppKey("identity_signing_key", bytes)
CONFIG_KEY: web.AppKey[SandboxConfig] = web.AppKey("identity_config", SandboxConfig)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, claims: dict[str, Any]) -> str:
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


def verify(key: bytes, token: str) -> dict[str, Any] | None:
    """The claims of a token this sandbox signed, or None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    mac = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(_unb64(parts[2]), mac):
            return None
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, json.JSONDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def issuer(origin: str, tenant: str) -> str:
    return f"{origin}/{tenant}/v2.0"


async def managed_identity_token(request: web.Request) -> web.Response:
    """GET /msi/token: the App Service managed identity protocol (user-assigned by client_id)."""
    config = request.app[CONFIG_KEY]
    if not secrets.compare_digest(
        request.headers.get("X-IDENTITY-HEADER", ""), config.identity_header
    ):
        return web.json_response(
            {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong."}, status=401
        )
    resource = request.query.get("resource", "").removesuffix("/.default")
    client_id = request.query.get("client_id", "")
    principal = config.managed_identities.get(client_id)
    if not resource or principal is None:
        return web.json_response(
            {
                "statusCode": 400,
                "message": "No managed identity with that client_id is assigned to this app."
                if resource
                else "resource is required.",
            },
            status=400,
        )
    now = int(time.time())
    expires = now + config.token_lifetime_seconds
    claims = {
        "aud": resource,
        "iss": issuer(str(request.url.origin()), config.tenant_id),
        "sub": principal,
        "oid": principal,
        "azp": client_id,
        "tid": config.tenant_id,
        "iat": now,
        "nbf": now,
        "exp": expires,
    }
    return web.json_response(
        {
            "access_token": sign(request.app[SIGNING_KEY], claims),
            "expires_on": str(expires),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }
    )


def assertion_error(request: web.Request, client_id: str, assertion: str) -> str | None:
    """Why Entra ID would refuse this client assertion for `client_id`, or None if it accepts."""
    config = request.app[CONFIG_KEY]
    claims = verify(request.app[SIGNING_KEY], assertion)
    if claims is None:
        return "AADSTS50027: JWT token is invalid or malformed."
    if int(claims.get("exp", 0)) <= time.time():
        return "AADSTS700024: Client assertion is not within its valid time range."
    trusted = config.federated_credentials.get(client_id, [])
    if claims.get("iss") != issuer(str(request.url.origin()), request.match_info["tenant"]):
        return (
            "AADSTS700211: No matching federated identity record found for presented assertion "
            "issuer."
        )
    if claims.get("aud") != TOKEN_EXCHANGE_AUDIENCE:
        return (
            "AADSTS700212: No matching federated identity record found for presented assertion "
            "audience."
        )
    if claims.get("sub") not in trusted:
        return (
            "AADSTS700213: No matching federated identity record found for presented assertion "
            "subject."
        )
    return None


def add_routes(app: web.Application, config: SandboxConfig) -> None:
    app[SIGNING_KEY] = secrets.token_bytes(32)
    app[CONFIG_KEY] = config
    app.router.add_get("/msi/token", managed_identity_token)
