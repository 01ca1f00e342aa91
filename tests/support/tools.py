"""External programs and optional packages a test needs: there, or a skip locally and a failure in CI."""

from __future__ import annotations

import importlib
import shutil
from types import ModuleType

from tests.support.redis_server import unavailable

# instructor pins jiter<0.15 while openai 3.x needs jiter>=0.16, so pip cannot install it beside openai with
# its dependencies; it runs fine on the newer jiter, so the README's test command installs it without them
# (its other dependencies are in the [test] extra).
INSTRUCTOR_INSTALL = "pip install --no-deps 'instructor>=1.7,<2', as the README's test command does"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        unavailable(f"{tool} is not installed (.ci/run installs Debian's prometheus package)")
    return path


def need_module(name: str, how: str) -> ModuleType:
    """`import name`, or a skip locally and a failure in CI; `how` says how the README's test command installs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        unavailable(f"{name} is not installed ({how})")
        raise  # unreachable: unavailable() skips or fails
