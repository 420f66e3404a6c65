"""Garbage-collector settings for a long-running server process.

After start-up the heap holds hundreds of thousands of objects that live as long as the process
(modules, SQLAlchemy mappers, pydantic validators, compiled trigger sets). Every full
collection walks them all again; under intake load that cost ~20 % of the api's CPU (bench:
`bench/intake.py`), and a worker allocates as briskly per delivery. Both call this at the end
of their start-up. `gc.freeze()` moves them to a permanent generation the collector skips,
and a larger first threshold lets short-lived request objects die in fewer collections. Cyclic
garbage is still collected; only its timing changes.
"""

import gc

# Allocations between young collections (CPython's default is 700).
YOUNG_THRESHOLD = 20_000


def freeze_startup_heap() -> None:
    """Call once the process has finished starting (imports, engines, caches warmed)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
