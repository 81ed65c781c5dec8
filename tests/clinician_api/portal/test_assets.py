"""The portal's templates and style sheet under the CSP: no inline script, handler or style,
nothing from elsewhere, every asset they name shipped in the package."""

from __future__ import annotations

import re
from importlib import resources


def test_portal_templates_are_csp_clean_and_load_only_own_assets() -> None:
    root = resources.files("clinician_api") / "templates" / "portal"
    static = resources.files("clinician_api") / "static"
    templates = [(p.name, p.read_text(encoding="utf-8")) for p in root.iterdir() if p.name.endswith(".html")]
    assert len(templates) >= 8
    for name, text in templates:
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, (name, tag)
        assert re.search(r"\son[a-z]+\s*=", text) is None, name
        assert re.search(r"\sstyle\s*=", text) is None, name
        assert "<style" not in text, name
        assert "http://" not in text, name
        assert "https://" not in text, name
        for ref in re.findall(r'(?:src|href)="(/static/[^"]+)"', text):
            assert static.joinpath(*ref.removeprefix("/static/").split("/")).is_file(), (name, ref)
    css = (static / "portal.css").read_text(encoding="utf-8")
    assert "url(" not in css  # no fonts or images from anywhere
    assert "@import" not in css
