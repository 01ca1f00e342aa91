"""State behind one protocol: `MemoryStore` (embedded default) and `RedisStore`."""

from gateway.store.protocol import Store, StoreError, key

__all__ = ["Store", "StoreError", "key"]
