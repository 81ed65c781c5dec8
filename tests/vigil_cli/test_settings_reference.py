"""docs/configuration.md is generated from the settings classes and must match them."""

from __future__ import annotations

from scripts.settings_reference import OUT, SECTIONS, render


def test_committed_reference_matches_the_settings_classes() -> None:
    assert OUT.read_text(encoding="utf-8") == render(), "run: python -m scripts.settings_reference"


def test_every_section_lists_its_settings_with_their_environment_names() -> None:
    text = render()
    for heading, _target, _readers in SECTIONS:
        assert f"## {heading}" in text
    assert "| `database_url` | `VIGIL_DATABASE_URL` |" in text
    assert "| `demo_history_days` | `VIGIL_DEMO_HISTORY_DAYS` |" in text
