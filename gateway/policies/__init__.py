from . import buckets  # noqa: F401  (registers the token_bucket memory twin)
