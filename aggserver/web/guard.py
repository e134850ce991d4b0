"""Every route guarded the same way: failures answered as JSON, the client's budget spent, the
answer counted and timed; routes registered and guarded from one declaration."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from aggserver.errors import InvalidParameter
from aggserver.web.keys import BUDGETS, REQUEST_STATS
from aggserver.web.responses import error_response

__all__ = ["GuardedRoutes", "guarded"]


def guarded(route: str, *, free: bool = False) -> Callable[[Handler], Handler]:
    """Wrap a handler so that any failure leaves as JSON (via ``error_response``), the request
    spends 1 from its client's budget (unless ``free``: the health probes), and, when request
    metrics are on, the answer is counted and timed under ``route``.

    A wrapper per handler instead of middlewares: aiohttp adds a layer of its own per request
    once any middleware exists, and the price route is measured to the percent.
    """

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded_handler(request: web.Request) -> web.StreamResponse:
            stats = request.app[REQUEST_STATS]
            started = time.perf_counter() if stats.enabled else 0.0
            try:
                budgets = request.app[BUDGETS]
                if budgets.enabled and not free:
                    budgets.spend(request, 1, route)
                if request.body_exists and request.method in ("GET", "HEAD"):
                    raise InvalidParameter("a GET request takes no body")
                response = await handler(request)
            except Exception as exc:  # noqa: BLE001 - every failure leaves as JSON, never as HTML
                response = error_response(exc)
            if stats.enabled:
                stats.record(route, response.status, time.perf_counter() - started)
            return response

        return guarded_handler

    return wrap


class GuardedRoutes(web.RouteTableDef):
    """A route table whose routes are registered and ``guarded`` from one path:
    ``@routes.get("/status")``, ``@routes.get("/health", free=True)``."""

    def route(
        self, method: str, path: str, *, free: bool = False, **kwargs: Any
    ) -> Callable[[Handler], Handler]:
        register = super().route(method, path, **kwargs)

        def decorate(handler: Handler) -> Handler:
            register(guarded(path, free=free)(handler))
            return handler

        return decorate
