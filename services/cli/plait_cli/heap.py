"""The garbage collector of a long-running service process, tuned once it has started.

A started service holds a large heap that lives as long as the process (modules, settings, connections), and
allocates short-lived objects for every message. With the interpreter's defaults, every oldest-generation collection
walks that whole startup heap again, and the youngest generation is collected every 700 net allocations.
"""

from __future__ import annotations

import gc

YOUNGEST_THRESHOLD = 20_000
"""Net allocations between collections of the youngest generation (the interpreter's default is 700)."""
OLDER_THRESHOLDS = (10, 10)
"""Collections of one generation between collections of the next (the interpreter's defaults)."""


def settle_heap() -> None:
    """Once the service has started: collect what startup left behind, move every object alive now out of the
    collector's sight (``gc.freeze``: they are never scanned again), and collect the youngest generation less
    often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNGEST_THRESHOLD, *OLDER_THRESHOLDS)
