"""The Flask app itself: what `app.App` leaves out of Flask must stay unused.

`App.ensure_sync` runs every view, hook and error handler as a plain function, so a coroutine
one would answer with an un-awaited coroutine instead of running: none may exist.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from support import ROOT

# Run in a subprocess: create_app() configures logging for the whole process.
_COROUTINES = """
import inspect
from app import create_app
app = create_app()
handlers = [*app.view_functions.values(),
            *(f for funcs in app.before_request_funcs.values() for f in funcs),
            *(f for funcs in app.after_request_funcs.values() for f in funcs),
            *(f for funcs in app.teardown_request_funcs.values() for f in funcs),
            *(f for by_code in app.error_handler_spec.values() for by_class in by_code.values()
              for f in by_class.values())]
assert len(handlers) >= 20, handlers
print([f.__qualname__ for f in handlers if inspect.iscoroutinefunction(f)])
app.extensions["pool"].close()
"""


@pytest.mark.parametrize("docs", ["on", "off"])
def test_no_view_hook_or_error_handler_is_a_coroutine(migrated, tmp_path, docs):
    env = {**migrated.env(tmp_path), "API_DOCS": docs}
    r = subprocess.run([sys.executable, "-c", _COROUTINES], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines()[-1] == "[]"
