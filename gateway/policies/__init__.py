from . import buckets  # noqa: F401  (registers the token_bucket memory twin)
from . import coalesce_flight  # noqa: F401  (registers the cache_lock_* memory twins)
from . import loadstate  # noqa: F401  (registers the coldstart_* memory twins)
from . import flight_scripts  # noqa: F401  (registers the cache_lookup_or_lock / cache_finish memory twins)
