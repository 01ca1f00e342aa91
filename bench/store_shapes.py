"""Bucket decisions per second through the Redis store: one redis-server vs a 3-master Redis Cluster.

`python -m bench.store_shapes`: starts a private redis-server and a private cluster (tests/support),
then runs `--decisions` token-bucket decisions from `--concurrency` concurrent callers, one tenant
per caller (so on the cluster the tags spread over the three masters), through `RedisStore` as the
gateway uses it (pipelined batches). Prints decisions/s and batches (round trips) per decision.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from gateway.policies.limits.buckets import Bucket, send_decision
from gateway.store.redis import RedisStore
from tests.support.redis_cluster import running_private_cluster
from tests.support.redis_server import running_private_redis


async def _run(url: str, decisions: int, concurrency: int) -> tuple[float, float]:
    store = RedisStore.from_url(url)
    per = decisions // concurrency

    async def caller(i: int) -> None:
        bucket = [Bucket(f"gwbench:v1:rl:{{tenant-{i}}}:req", 1e9, 1e9)]
        for _ in range(per):
            await send_decision(store, bucket)

    try:
        await asyncio.gather(*(caller(i) for i in range(min(concurrency, 50))))  # warm: scripts loaded
        start, batches = time.perf_counter(), store.queue.batches
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        seconds = time.perf_counter() - start
        return per * concurrency / seconds, (store.queue.batches - batches) / (per * concurrency)
    finally:
        await store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--decisions", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=200)
    args = p.parse_args()
    with running_private_redis() as single, tempfile.TemporaryDirectory() as tmp, \
            running_private_cluster(Path(tmp)) as cluster:
        for name, url in (("single", single.url), ("cluster", cluster.url)):
            rate, trips = asyncio.run(_run(url, args.decisions, args.concurrency))
            print(f"{name:8s} {rate:10.0f} decisions/s   {trips:.3f} batches per decision")


if __name__ == "__main__":
    main()
