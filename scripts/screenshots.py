"""Regenerate docs/screenshots: run the browser tests with VIGIL_SCREENSHOTS pointing there.

Run: ``.venv/bin/python -m scripts.screenshots`` (needs PostgreSQL and /usr/bin/chromium, as the
test suite does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"


def main() -> int:
    SHOTS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VIGIL_SCREENSHOTS": str(SHOTS)}
    return subprocess.call(
        [sys.executable, "-m", "pytest", "tests/browser", "-q", "-p", "no:cacheprovider"], cwd=ROOT, env=env
    )


if __name__ == "__main__":
    sys.exit(main())
