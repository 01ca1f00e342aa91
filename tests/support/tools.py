"""External programs a test needs (promtool, prometheus): the path, or a skip locally and a failure in CI."""

from __future__ import annotations

import shutil

from tests.support.redis_server import unavailable


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        unavailable(f"{tool} is not installed (.ci/run installs Debian's prometheus package)")
    return path
