"""The route table: every route of the API, and JSON answers for a wrong method on any of them
(405) and for any other path (404), so no path or method is ever answered with HTML."""

from __future__ import annotations

from aiohttp import web

from aggserver.web.guard import guarded
from aggserver.web.routes import history, ops, oracle, prices, streams

__all__ = ["ROUTE_TABLES", "add_routes"]

# In this order: /prices/{asset} before the oracle's /prices/{asset}/... and /prices/at (aiohttp
# looks up a whole path before the prefixes of dynamic routes, so /prices/at still wins).
ROUTE_TABLES: tuple[web.RouteTableDef, ...] = (
    prices.routes,
    history.routes,
    ops.routes,
    oracle.routes,
    streams.routes,
)


def add_routes(app: web.Application) -> None:
    """The API's routes, then JSON answers for a wrong method on any of them (405) and for
    any other path (404): no path or method is ever answered with HTML."""
    for table in ROUTE_TABLES:
        app.router.add_routes(table)
    for resource in list(app.router.resources()):
        if not isinstance(resource, web.Resource):
            continue
        allowed = sorted({route.method for route in resource})

        @guarded(resource.canonical)
        async def method_not_allowed(request: web.Request, allowed: list[str] = allowed) -> web.Response:
            raise web.HTTPMethodNotAllowed(request.method, allowed)

        resource.add_route("*", method_not_allowed)

    @guarded("unmatched")
    async def not_found(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    app.router.add_route("*", "/{path:.*}", not_found)
