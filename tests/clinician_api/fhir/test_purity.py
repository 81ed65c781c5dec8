"""clinician_api.fhir is pure: no store, database driver or web framework.

Checked on the source (every import statement, also inside functions) so that a lazy import cannot
slip through; allowed are the standard library, rpm_core and the package itself.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ALLOWED_FIRST_PARTY = {"rpm_core", "clinician_api"}


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def check_pure(package: str) -> None:
    files = sorted((ROOT / "clinician_api" / package).glob("*.py"))
    assert files
    for path in files:
        for name in imports(path):
            top = name.split(".")[0]
            if top == "clinician_api":
                assert name.startswith(f"clinician_api.{package}"), (path.name, name)
            elif top not in ALLOWED_FIRST_PARTY:
                assert top in sys.stdlib_module_names or top == "__future__", (path.name, name)


def test_fhir_imports_only_stdlib_rpm_core_and_itself() -> None:
    check_pure("fhir")


def test_the_check_sees_imports_hidden_in_functions(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    import psycopg\n    from store.readings import latest\n")
    assert imports(sample) == ["psycopg", "store.readings"]
