"""Property-based testing of the served OpenAPI document with Schemathesis.

Every check (server errors, status codes, headers, content types, response
schemas, negative and positive data, unsupported methods, use after delete,
stateful links...) against the real server, across all of its phases.
`schemathesis.toml` at the repository root says which extra statuses are
legitimate, and why.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_served_openapi_document_holds_under_generated_requests(server, api_key, tmp_path):
    seed = random.randrange(2**32)
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    result = subprocess.run(
        [
            st, "run", f"{server.url}/openapi.json",
            "--checks", "all",
            "--max-examples", "150",
            "--seed", str(seed),
            "--generation-database", "none",
            "--request-timeout", "10",
            "--no-color",
            "--report", "junit", "--report-dir", str(tmp_path),
        ],
        cwd=ROOT,
        env={**os.environ, "API_KEY": api_key},  # schemathesis.toml sends it as the bearer key
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = result.stdout[-6000:]
    print(summary)
    assert result.returncode == 0, f"schemathesis failed (seed {seed}):\n{summary}"
    generated = int(re.search(r"(\d+) generated", summary).group(1))
    assert generated >= 1500, f"only {generated} cases were generated"
