"""What aiohttp answers before a request reaches the application: JSON, like every other error.

Malformed request lines, oversized lines or headers and broken framing are answered by aiohttp's
connection handler with a plain-text page. ``install`` wraps that one method so the status stays
aiohttp's and the body becomes ``{"msg": ...}``. It patches aiohttp's RequestHandler (there is no
public hook for this); the tests that send such requests fail if an aiohttp upgrade changes it.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["install"]

_original_handle_error = RequestHandler.handle_error


def _json_error(
    self: RequestHandler,
    request: web.BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    # The original logs and checks that nothing was sent yet; only its body is replaced.
    original = _original_handle_error(self, request, status, exc, message)
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    detail = (message or "").strip().splitlines()[0][:200] if message and status < 500 else ""
    response = web.Response(
        body=orjson.dumps({"msg": f"{phrase}: {detail}" if detail else phrase}),
        status=status,
        content_type="application/json",
    )
    response.force_close()
    del original
    return response


def install() -> None:
    """Answer protocol errors with JSON from now on (idempotent)."""
    RequestHandler.handle_error = _json_error  # type: ignore[method-assign]
