from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from store.errors import MigrationError
from store.migrate import load_migrations, migrate, status
from tests.support.pg import temporary_database


def vigil(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil_cli", *args, "--database-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def schema_fingerprint(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall()


def test_migrations_are_ordered_and_unique() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(set(versions))
    assert versions[:2] == [1, 2]


def test_vigil_db_migrate_twice_then_status_all_applied() -> None:
    with temporary_database() as url:
        before = vigil("db", "status", url=url)
        assert before.returncode == 3, before.stderr
        assert "pending" in before.stdout

        first = vigil("db", "migrate", url=url)
        assert first.returncode == 0, first.stderr
        assert "applied 0001_core" in first.stdout
        schema = schema_fingerprint(url)
        with psycopg.connect(url) as conn:
            applied_at = conn.execute("SELECT version, applied_at FROM schema_migrations ORDER BY 1").fetchall()

        second = vigil("db", "migrate", url=url)
        assert second.returncode == 0, second.stderr
        assert "nothing to apply" in second.stdout
        assert schema_fingerprint(url) == schema
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT version, applied_at FROM schema_migrations ORDER BY 1").fetchall() == applied_at

        st = vigil("db", "status", url=url)
        assert st.returncode == 0, st.stderr
        assert "flavor: postgres" in st.stdout
        assert "pending" not in st.stdout
        assert st.stdout.count(" applied ") == len(load_migrations())


def test_a_migration_edited_after_it_was_applied_is_reported() -> None:
    with temporary_database() as url:
        migrate(url, flavor="postgres")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
            assert status(conn).modified == (1,)
        with pytest.raises(MigrationError):
            migrate(url)


def test_a_failing_migration_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    import store.migrate as m

    real = m.load_migrations()
    last = real[-1].version  # numbers are not contiguous: each package owns a range
    broken = (*real, m.Migration(last + 1, "broken", "CREATE TABLE half_done (x int); SELECT 1/0;", ()))
    monkeypatch.setattr(m, "load_migrations", lambda: broken)
    with temporary_database() as url:
        with pytest.raises(MigrationError):
            migrate(url, flavor="postgres")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
            assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (last,)


def test_cannot_switch_flavor_after_the_first_migration() -> None:
    with temporary_database() as url:
        migrate(url, flavor="postgres")
        with pytest.raises(MigrationError):
            migrate(url, flavor="timescaledb")


def test_bad_database_url_is_a_clear_error() -> None:
    res = vigil("db", "status", url="postgresql://127.0.0.1:1/none?connect_timeout=2")
    assert res.returncode == 1
    assert res.stderr.startswith("error: cannot connect")
