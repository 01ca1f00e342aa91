"""State behind one protocol: `MemoryStore` (embedded default) and `RedisStore`."""

from .base import Store, StoreError, key

__all__ = ["Store", "StoreError", "key"]
