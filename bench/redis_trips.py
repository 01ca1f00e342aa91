"""Redis work per request on the hot path, read from the bench's own redis-server.

`total_commands_processed` counts commands; `total_reads_processed` counts read events on client
sockets, so a pipelined batch (or one EVALSHA) is one read: reads per request is the round-trip
figure. On a shared Redis (no redis-server binary) other clients add noise: the result says so.
"""

from __future__ import annotations

from typing import Any

import redis

from .measure import CHAT, CHAT_PATH, Meter
from .topology import Server


def _stats(client: redis.Redis) -> tuple[int, int, dict[str, int]]:
    stats = client.info("stats")
    cmds = client.info("commandstats")
    per = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in cmds.items()}
    return int(stats["total_commands_processed"]), int(stats["total_reads_processed"]), per


def trips_per_request(meter: Meter, server: Server, redis_url: str, requests: int, own: bool) -> dict[str, Any]:
    """Commands and reads (round trips) per request over `requests` unique chat requests."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        c0, r0, per0 = _stats(client)
        res = meter.count(server, CHAT_PATH, CHAT, requests, connections=8)
        c1, r1, per1 = _stats(client)
    finally:
        client.close()
    n = max(1, res["count"])
    # The two INFO pairs of this probe are themselves commands on their own reads.
    commands = max(0, c1 - c0 - 2)
    reads = max(0, r1 - r0 - 2)
    by_command = {k: (v - per0.get(k, 0)) / n for k, v in per1.items() if v - per0.get(k, 0) > 0 and k != "info"}
    return {"requests": n, "errors": res["errors"], "commands_per_request": commands / n,
            "trips_per_request": reads / n, "by_command": by_command, "exact": own}
