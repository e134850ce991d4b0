"""The ceiling: bare aiohttp on uvloop answering a constant JSON body of a given size.

Nothing can serve a GET faster on this stack, so every scenario is quoted as a ratio to it.
"""

from __future__ import annotations

import argparse

import uvloop
from aiohttp import web

from aggserver.settings import ACCEPT_BACKLOG


def create_app(body_size: int) -> web.Application:
    padding = max(0, body_size - len(b'{"asset":"btcusdt","pad":""}'))
    body = b'{"asset":"btcusdt","pad":"' + b"x" * padding + b'"}'

    async def constant(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/prices/{asset}", constant)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-size", type=int, default=110)
    args = parser.parse_args()
    web.run_app(
        create_app(args.body_size),
        host="127.0.0.1",
        port=args.port,
        loop=uvloop.new_event_loop(),
        access_log=None,
        # aggserver's accept queue: run_app's default of 128 drops SYNs at 1,000 connections
        # (ListenOverflows in nstat), which wrk counts as timeouts.
        backlog=ACCEPT_BACKLOG,
        print=None,
    )


if __name__ == "__main__":
    main()
