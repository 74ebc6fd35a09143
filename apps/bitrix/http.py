"""The wire: the only module that imports `requests` to talk to Bitrix24.

- `http_send` sends one request: JSON body, `Accept: application/json`, a User-Agent, connect and
  read timeouts, `allow_redirects=False` (a 301/302 raises PortalMoved). A network failure becomes
  NotSent (the request never left) or OutcomeUnknown (it may have arrived).
- `token_request` asks an OAuth token endpoint for tokens (FACTS §7).
- `verify_access_token` checks an access token with `app.info` (FACTS §10).

Logs carry a label (the portal slug) and the method, never the URL; request exceptions are
re-raised `from None` so that no traceback carries a webhook URL or a token either.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from typing import Any

import requests
import urllib3.exceptions
from django.conf import settings

from .envelope import decode_body, error_from_body
from .errors import NotSent, OutcomeUnknown, PortalMoved
from .redact import redact

logger = logging.getLogger(__name__)

USER_AGENT = f"bitrix24-agent-control-plane/1.0 (+requests/{requests.__version__})"

_session: requests.Session | None = None
_session_pid: int | None = None
_session_lock = threading.Lock()


def get_session() -> requests.Session:
    """The process's session (a new one after fork: pooled sockets are not shared)."""
    global _session, _session_pid
    pid = os.getpid()
    if _session is None or _session_pid != pid:
        with _session_lock:
            if _session is None or _session_pid != pid:
                session = requests.Session()
                session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
                adapter = requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=16, max_retries=0)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                _session, _session_pid = session, pid
    return _session


def http_send(
    http_method: str,
    url: str,
    *,
    json_body: Any = None,
    params: dict | None = None,
    method: str,
    label: str,
    secrets: tuple[str, ...] = (),
) -> requests.Response:
    """One request, no redirects, timeouts set. Network failures become NotSent (the request
    never left) or OutcomeUnknown (it may have arrived). `label` (the portal slug) and `method`
    are what gets logged; `secrets` are masked in a redirect's Location."""
    request_headers = {}
    data = None
    if json_body is not None:
        data = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        request_headers["Content-Type"] = "application/json; charset=utf-8"
    try:
        response = get_session().request(
            http_method,
            url,
            data=data,
            params=params,
            headers=request_headers,
            timeout=(float(settings.BITRIX_CONNECT_TIMEOUT), float(settings.BITRIX_READ_TIMEOUT)),
            allow_redirects=False,
        )
    except requests.ConnectionError as exc:
        if _never_sent(exc):
            logger.warning("bitrix %s %s: connection failed before sending (%s)", label, method, type(exc).__name__)
            raise NotSent(
                "CONNECTION_FAILED",
                f"Could not connect to the portal ({type(_root_cause(exc)).__name__}).",
                retry_after=5.0,
                method=method,
            ) from None
        logger.warning("bitrix %s %s: connection broken after sending (%s)", label, method, type(exc).__name__)
        raise OutcomeUnknown(
            "CONNECTION_BROKEN",
            f"The connection broke after the request was sent ({type(_root_cause(exc)).__name__}).",
            method=method,
        ) from None
    except requests.Timeout:
        # ConnectTimeout is a ConnectionError and handled above: this is a read timeout.
        logger.warning("bitrix %s %s: read timeout", label, method)
        raise OutcomeUnknown("READ_TIMEOUT", "No answer within the read timeout.", method=method) from None
    except requests.RequestException as exc:
        logger.warning("bitrix %s %s: request failed (%s)", label, method, type(exc).__name__)
        raise OutcomeUnknown(
            "REQUEST_FAILED", f"The request failed ({type(exc).__name__}).", method=method
        ) from None
    if response.status_code in (301, 302, 303, 307, 308):
        location = redact(response.headers.get("Location", ""), secrets)
        logger.error("bitrix %s %s: portal moved (HTTP %s)", label, method, response.status_code)
        raise PortalMoved(
            "PORTAL_MOVED",
            f"The portal answered HTTP {response.status_code} (moved); the call was not repeated.",
            http_status=response.status_code,
            location=location,
            method=method,
        )
    return response


def _never_sent(exc: requests.ConnectionError) -> bool:
    """Connection refused, DNS failure, connect timeout: the request never left."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = _root_cause(exc)
    return isinstance(
        cause,
        (
            urllib3.exceptions.NewConnectionError,
            urllib3.exceptions.NameResolutionError,
            urllib3.exceptions.ConnectTimeoutError,
            ConnectionRefusedError,
            socket.gaierror,
        ),
    )


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while True:
        nxt = getattr(exc, "reason", None) or exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen or nxt is exc:
            return exc
        seen.add(id(exc))
        exc = nxt


def token_request(*, token_url: str, params: dict, label: str = "oauth") -> dict:
    """GET the OAuth token endpoint (FACTS §7). Returns the token document or raises the
    classified error (invalid_grant -> AuthFailed ...). The query holds the client secret: the
    URL is never logged."""
    response = http_send(
        "GET",
        token_url,
        params=params,
        method="oauth.token",
        label=label,
        secrets=tuple(str(v) for v in params.values() if v),
    )
    body = decode_body(response.status_code, response.content, method="oauth.token")
    if isinstance(body, dict) and "error" in body:
        raise error_from_body(response.status_code, body, method="oauth.token")
    if response.status_code >= 400 or not isinstance(body, dict) or not body.get("access_token"):
        raise OutcomeUnknown(
            "ERROR_UNEXPECTED_ANSWER",
            f"The token endpoint answered HTTP {response.status_code} without a token.",
            http_status=response.status_code,
            method="oauth.token",
        )
    return body


def verify_access_token(*, client_endpoint: str, access_token: str, label: str) -> dict:
    """Call `app.info` with an access token at a portal's REST address (FACTS §10): the token
    is genuine if the portal answers with a result. Returns the result."""
    url = client_endpoint.rstrip("/") + "/app.info"
    response = http_send(
        "POST", url, json_body={"auth": access_token}, method="app.info", label=label, secrets=(access_token,)
    )
    body = decode_body(response.status_code, response.content, method="app.info")
    err = error_from_body(response.status_code, body, method="app.info")
    if err is not None:
        raise err
    return body.get("result") if isinstance(body.get("result"), dict) else {}
