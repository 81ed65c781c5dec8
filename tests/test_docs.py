"""A clone can read its documentation alone: no file points outside the repository.

Every tracked file is searched for references to the workspace's shared folder (the design notes
the project started from, which a clone does not have); docs/ says all of it in the project's own
words. Every relative Markdown link in README.md and docs/ must name a file inside the repository
(anchors are not checked). Both checks are first run on planted examples, so neither can pass
because it looked at nothing.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = frozenset({".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"})
# Built from parts so that this file does not match itself.
SHARED = "shared"
FORBIDDEN = (
    "../" + SHARED,
    "/work/" + SHARED,
    SHARED + "/reference/",
    SHARED + "/ARCHITECTURE.md",
    SHARED + "/STYLE.md",
)
FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_DEF = re.compile(r"^[ ]{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//|#)")


def tracked_files(root: Path) -> list[Path]:
    """Files git tracks under ``root``; without git (an exported tree), every file outside caches."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return [p for p in root.rglob("*") if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(root).parts)]
    return [root / name for name in out.decode().split("\0") if name]


def forbidden_references(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line of ``path`` that points at the shared folder."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):  # deleted but not yet committed; a submodule
        return
    needles = [n.encode() for n in FORBIDDEN]
    for number, line in enumerate(data.splitlines(), 1):
        if any(n in line for n in needles):
            yield number, line.decode(errors="replace").strip()[:200]


def link_targets(markdown: str) -> list[str]:
    """Relative link targets of a Markdown text (inline and reference-style), code excluded."""
    text = CODE_SPAN.sub("", FENCE.sub("", markdown))
    targets = INLINE_LINK.findall(text) + REFERENCE_DEF.findall(text)
    return [t for t in targets if not EXTERNAL.match(t)]


def broken_links(doc: Path, root: Path) -> list[str]:
    """Links of ``doc`` whose file does not exist inside ``root`` (the anchor is ignored)."""
    broken = []
    for target in link_targets(doc.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0].split("?", 1)[0]
        resolved = (root / path.lstrip("/")) if path.startswith("/") else (doc.parent / path)
        resolved = resolved.resolve()
        if not resolved.is_relative_to(root.resolve()) or not resolved.exists():
            broken.append(target)
    return broken


def markdown_docs(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


# -- the checks can fail -------------------------------------------------------------------------


def test_planted_shared_references_are_found(tmp_path: Path) -> None:
    planted = tmp_path / "mod.py"
    lines = ['"""Clean."""', *(f"# see {needle}x.md" for needle in FORBIDDEN), "x = 1"]
    planted.write_text("\n".join(lines) + "\n")
    assert [n for n, _ in forbidden_references(planted)] == list(range(2, 2 + len(FORBIDDEN)))
    clean = tmp_path / "clean.md"
    clean.write_text("MQTT shared subscriptions; a shared secret; docs/reference/clinical.md\n")
    assert list(forbidden_references(clean)) == []


def test_planted_broken_links_are_found(tmp_path: Path) -> None:
    (tmp_path / "docs" / "reference").mkdir(parents=True)
    (tmp_path / "docs" / "ok.md").write_text("ok\n")
    (tmp_path / "outside.md").write_text("outside the repository\n")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "docs" / "reference").mkdir(parents=True)
    (root / "docs" / "ok.md").write_text("# OK\n")
    (root / "docs" / "reference" / "table.md").write_text("# Table\n")
    doc = root / "docs" / "page.md"
    doc.write_text(
        "[fine](ok.md#ok) [fine too](reference/table.md) ![img](ok.md) [web](https://example.org/x.md)\n"
        "[anchor](#here) [mail](mailto:a@example.org) `[code](missing-in-code.md)`\n"
        "```\n[fenced](missing-in-fence.md)\n```\n"
        '[gone](missing.md) [escapes](../../outside.md) [title](gone-too.md "a title")\n'
        "[ref]: ../../docs/ok.md\n"
    )
    assert broken_links(doc, root) == ["missing.md", "../../outside.md", "gone-too.md", "../../docs/ok.md"]


# -- the repository ------------------------------------------------------------------------------


def test_no_tracked_file_points_at_the_shared_folder() -> None:
    files = tracked_files(ROOT)
    assert len(files) > 100  # the whole tree was searched
    found = [f"{p.relative_to(ROOT)}:{n}: {line}" for p in files for n, line in forbidden_references(p)]
    assert found == [], "say it in docs/ instead:\n" + "\n".join(found)


@pytest.mark.parametrize("doc", markdown_docs(ROOT), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(doc: Path) -> None:
    assert broken_links(doc, ROOT) == []


def test_the_docs_are_linked_and_checked() -> None:
    docs = markdown_docs(ROOT)
    names = {str(p.relative_to(ROOT)) for p in docs}
    assert {"README.md", "docs/design.md", "docs/reference/clinical.md", "docs/reference/ble-gatt.md"} <= names
    assert sum(len(link_targets(p.read_text(encoding="utf-8"))) for p in docs) > 30  # links were seen
