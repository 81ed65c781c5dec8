"""Re-vendor the dashboard's JavaScript and CSS from npm into ``clinician_api/static/vendor``.

The dashboard works without internet (no CDN): every asset ships inside the package. This script
is the only way those files change: it runs ``npm pack NAME@VERSION`` for each package below
(npm checks the tarball against the registry's integrity hash), copies the listed files and the
package's licence, and records name, version, the tarball's integrity and each file's SHA-256 in
``VENDOR.json``. ``tests/clinician_api/test_vendored_assets.py`` checks the files against that
record, so a hand edit or a partial update fails the suite.

Run: ``.venv/bin/python -m scripts.vendor_static`` (needs npm and the registry), then commit.
To upgrade, change a version below and run it again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
VENDOR: Final = ROOT / "clinician_api" / "static" / "vendor"
RECORD: Final = VENDOR / "VENDOR.json"

# (npm package, version, files inside the package, licence file). htmx stays on the 2.x line: 4.0
# (2026) is a rewrite whose extensions and documentation have not caught up yet.
PACKAGES: Final = (
    ("htmx.org", "2.0.11", ("dist/htmx.min.js",), "LICENSE"),
    ("uplot", "1.6.32", ("dist/uPlot.iife.min.js", "dist/uPlot.min.css"), "LICENSE"),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pack(name: str, version: str, into: Path) -> tuple[Path, str]:
    out = subprocess.run(  # noqa: S603 - fixed argv
        ["npm", "pack", f"{name}@{version}", "--json", "--pack-destination", str(into)],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    )
    (info,) = json.loads(out.stdout)
    return into / info["filename"], str(info["integrity"])


def vendor() -> dict[str, object]:
    record: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, version, files, licence in PACKAGES:
            tarball, integrity = _pack(name, version, work)
            target = VENDOR / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            with tarfile.open(tarball) as tar:
                for member in (*files, licence):
                    source = tar.extractfile(f"package/{member}")
                    if source is None:
                        raise SystemExit(f"{name}@{version} has no {member}")
                    (target / Path(member).name).write_bytes(source.read())
            record[name] = {
                "version": version,
                "integrity": integrity,
                "licence": Path(licence).name,
                "files": {Path(f).name: sha256(target / Path(f).name) for f in (*files, licence)},
            }
    RECORD.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return record


if __name__ == "__main__":
    print(json.dumps(vendor(), indent=2))
