"""The floor: a bare aiohttp pass-through proxy (no parsing, no policies), what any aiohttp gateway costs at least.

Run: `python -m bench.passthrough --port 9200 --upstream http://127.0.0.1:9100`.
"""

import argparse
import asyncio

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


async def proxy(request: web.Request) -> web.StreamResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    upstream = request.app[SESSION]
    async with upstream.request(request.method, request.path_qs, data=await request.read(), headers=headers) as up:
        ctype = up.headers.get("Content-Type", "")
        if not ctype.startswith("text/event-stream"):
            return web.Response(status=up.status, body=await up.read(), headers={"Content-Type": ctype})
        resp = web.StreamResponse(status=up.status, headers={"Content-Type": ctype})
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    args = p.parse_args()
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    async def make() -> web.Application:
        app = web.Application()
        app[SESSION] = aiohttp.ClientSession(args.upstream, connector=aiohttp.TCPConnector(limit=0))
        app.on_cleanup.append(lambda a: a[SESSION].close())
        app.router.add_route("*", "/{tail:.*}", proxy)
        return app

    web.run_app(make(), host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
