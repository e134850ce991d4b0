"""Operating it: health and readiness, /status, /metrics, the contract and the dashboard."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aggserver.web.guard import GuardedRoutes
from aggserver.web.keys import (
    CACHE,
    DATA_PLANE,
    FRESHNESS,
    HISTORY_READY,
    HISTORY_WRITER,
    INGESTOR,
    LEASE,
    METRICS_REGISTRY,
    OUTBOX,
    REFRESHER,
    SCHEDULER,
    SETTINGS,
    STREAM_HUB,
    TIERS,
    UNIVERSE,
    USD_PRICER,
)
from aggserver.web.responses import json_response
from aggserver.web.telemetry import exchange_stats

__all__ = ["DASHBOARD", "OPENAPI_SPEC", "routes"]

routes = GuardedRoutes()

OPENAPI_SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"
DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard.html"


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    body = generate_latest(request.app[METRICS_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/ready", free=True)
async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 only when Redis answers and the DynamoDB table is reachable."""
    checks = {
        "redis": await request.app[CACHE].ping(),
        "dynamodb": await request.app[HISTORY_READY](),
    }
    body: dict[str, object] = {name: "ok" if ok else "down" for name, ok in checks.items()}
    if all(checks.values()):
        return json_response({"status": "ready", **body})
    down = ", ".join(name for name, ok in checks.items() if not ok)
    return json_response({"msg": f"Not ready: {down} unreachable", **body}, 503)


@routes.get("/openapi.yaml")
async def openapi_spec(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_SPEC.read_bytes(), content_type="application/yaml")


@routes.get("/health", free=True)
async def health(request: web.Request) -> web.Response:
    """Liveness: answers as long as the process serves requests."""
    return json_response({"status": "ok"})


@routes.get("/status")
async def status(request: web.Request) -> web.Response:
    """What this process sees of the service, for the dashboard (Prometheus has the rest)."""
    app = request.app
    tiers = app[TIERS]
    scheduler, lease, outbox = app[SCHEDULER].stats(), app[LEASE].stats(), app[OUTBOX].stats()
    state = outbox.state
    outcomes: dict[str, dict[str, int]] = {}
    for (tier, outcome), count in app[REFRESHER].stats().outcomes.items():
        outcomes.setdefault(tier, {})[outcome] = count
    universe = app[UNIVERSE].stats()
    return json_response(
        {
            "hot": tiers.members(tiers.hot),
            "universe": {
                "source": universe.source,
                "symbols": universe.symbols,
                "pairs": universe.pairs,
                "usd_prices": universe.usd_prices,
                "delisted": universe.delisted,
                "venues": {
                    name: {
                        "listed": listed,
                        "share": round(listed / universe.pairs, 4) if universe.pairs else 0.0,
                    }
                    for name, listed in universe.venues.items()
                },
                "usd_passes": app[USD_PRICER].passes,
            },
            "exchanges": [
                {
                    "name": exchange.name,
                    "venue": exchange.venue,
                    "circuit": exchange.circuit.value,
                    "requests": exchange.requests,
                    "errors": exchange.errors,
                    "listed": exchange.listed,
                    "listing_loaded_at": exchange.listing_loaded_at,
                    "listing_error": exchange.listing_error,
                    "rate_limited": exchange.rate_limited,
                    "held": exchange.held,
                    "blocked_seconds": round(exchange.blocked_seconds, 1),
                    "stream": app[INGESTOR].status(exchange.name),
                }
                for exchange in exchange_stats(app)
            ],
            "refresh": {
                "data_plane": app[SETTINGS].data_plane_mode,
                "data_plane_pid": child.pid if (child := app[DATA_PLANE]) is not None else None,
                "runs_scheduler": lease.held,
                "shards": lease.shards,
                "owned_shards": sorted(lease.owned),
                "round_seconds": scheduler.rounds,
                "catch_up_seconds": scheduler.catch_up_seconds,
                "outcomes": outcomes,
            },
            "history": {
                "writer": app[HISTORY_WRITER].mode,
                "pending": state.backlog + outbox.in_memory,
                "backlog": state.backlog,
                "in_memory": outbox.in_memory,
                "oldest_seconds": None if state.oldest_seconds is None else round(state.oldest_seconds, 1),
                "writers_alive": state.writers_alive,
                "written": state.written,
                "retried": state.retried,
                "reclaimed": state.reclaimed,
                "dropped": outbox.dropped,
                "rollups_due": state.rollups_due,
                "error": state.error,
            },
            "streams": app[STREAM_HUB].stats().connections,
            "freshness": await app[FRESHNESS].summary(),
        }
    )


@routes.get("/")
async def dashboard(request: web.Request) -> web.Response:
    """The live dashboard: one static page, everything it needs served from here."""
    return web.Response(body=DASHBOARD.read_bytes(), content_type="text/html", charset="utf-8")
