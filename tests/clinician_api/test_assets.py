"""What ships for the browser: templates and scripts the CSP can run (no inline script, event
handler or style; nothing loaded from elsewhere), and vendored files that are exactly the npm
releases recorded in VENDOR.json (re-vendor with ``python -m scripts.vendor_static``)."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources

from scripts.vendor_static import PACKAGES, RECORD, VENDOR


def _package_files(folder: str, suffix: str) -> list[tuple[str, str]]:
    root = resources.files("clinician_api") / folder
    return [(p.name, p.read_text(encoding="utf-8")) for p in root.iterdir() if p.name.endswith(suffix)]


def test_templates_hold_no_inline_script_style_or_handler() -> None:
    templates = _package_files("templates", ".html")
    assert len(templates) >= 10
    for name, text in templates:
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, (name, tag)
        assert re.search(r"<script\b[^>]*>(?!\s*</script>)", text) is None, name  # nothing between the tags
        assert re.search(r"\son[a-z]+\s*=", text) is None, name
        assert re.search(r"\sstyle\s*=", text) is None, name
        assert "<style" not in text, name
        assert "http://" not in text, name  # nothing from elsewhere
        assert "https://" not in text, name


def test_scripts_use_no_eval_and_load_nothing_from_elsewhere() -> None:
    for name, text in _package_files("static", ".js"):
        assert "eval(" not in text, name
        assert "new Function" not in text, name
        assert "http://" not in text, name
        assert "https://" not in text, name


def test_vendored_files_are_the_recorded_npm_releases() -> None:
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    assert {name: entry["version"] for name, entry in record.items()} == {p[0]: p[1] for p in PACKAGES}
    for name, entry in record.items():
        assert entry["integrity"].startswith("sha512-")
        shipped = {p.name for p in (VENDOR / name).iterdir()}
        assert shipped == set(entry["files"]), name  # nothing extra, nothing missing
        assert entry["licence"] in shipped, name  # the licence travels with the code
        for filename, digest in entry["files"].items():
            assert hashlib.sha256((VENDOR / name / filename).read_bytes()).hexdigest() == digest, filename


def test_pages_load_only_vendored_or_own_assets() -> None:
    static = resources.files("clinician_api") / "static"
    for name, text in _package_files("templates", ".html"):
        for ref in re.findall(r'(?:src|href)="(/static/[^"]+)"', text):
            target = static.joinpath(*ref.removeprefix("/static/").split("/"))
            assert target.is_file(), (name, ref)
