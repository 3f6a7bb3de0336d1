"""Work a worker does on a timer, and once more as it exits.

Per-request bookkeeping is cheapest when a request only notes what happened
and a thread writes the notes out now and then: the request lines
(app/logs.py) and the metrics (app/metrics.py). What is still noted when the
worker exits must be written too. A Granian worker is a multiprocessing child
and ends with os._exit, which skips atexit, so that last round runs from
multiprocessing's exit finalizers, which a plain process runs at exit as well.
"""

from __future__ import annotations

import multiprocessing.util
import threading
import time
from collections.abc import Callable


def every(seconds: float, job: Callable[[], None], name: str, *,
          at_exit: Callable[[], None] | None = None, until: Callable[[], bool] | None = None) -> None:
    """Run `job` every `seconds` in a daemon thread of this process (threads do not survive a
    fork: call it in each worker), until `until()` is true; run `at_exit` (default: `job`) when
    the process exits."""

    def loop() -> None:
        while True:
            time.sleep(seconds)
            if until is not None and until():
                return
            job()

    threading.Thread(target=loop, name=name, daemon=True).start()
    multiprocessing.util.Finalize(None, at_exit or job, exitpriority=100)
