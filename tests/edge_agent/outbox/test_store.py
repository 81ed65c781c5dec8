"""The SQLite outbox: durability settings, sequence numbers, overflow gaps, receipts, encryption at rest."""

from __future__ import annotations

import dataclasses
import errno
import os
import secrets
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.errors import (
    OutboxCorrupt,
    OutboxError,
    OutboxFull,
    OutboxKeyMismatch,
    OutboxMissing,
    OutboxSchemaTooNew,
)
from edge_agent.outbox import SCHEMA_VERSION, Cursor, SqliteOutbox, inspect_outbox
from rpm_core.clock import ManualClock
from rpm_core.reading import SeqRange
from rpm_core.status import DeviceStatus
from tests.edge_agent.outbox.conftest import AGENT, KID, START, reading


def reopen(path: Path, key: bytes, clock: ManualClock, max_readings: int = 1000) -> SqliteOutbox:
    return SqliteOutbox.open(path, key=key, agent=AGENT, kid=KID, clock=clock, max_readings=max_readings)


def test_durability_pragmas_schema_version_and_file_mode(path: Path, outbox: SqliteOutbox) -> None:
    db = outbox._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert path.stat().st_mode & 0o777 == 0o600


def test_round_trip_in_sequence(outbox: SqliteOutbox) -> None:
    stored = [reading(i) for i in range(5)]
    assert outbox.append(stored[:2]) == [1, 2]
    assert outbox.append(stored[2:]) == [3, 4, 5]
    back = outbox.fetch(0, 10)
    assert [r.seq for r in back] == [1, 2, 3, 4, 5]
    assert back == [dataclasses.replace(r, seq=i + 1) for i, r in enumerate(stored)]
    assert [r.seq for r in outbox.fetch(3, 10)] == [4, 5]
    assert outbox.backlog(2, 2).count == 2
    assert outbox.backlog(0, 100).oldest_queued_at == START


def test_sequence_numbers_survive_restarts_and_are_never_reused(
    path: Path, key: bytes, clock: ManualClock, outbox: SqliteOutbox
) -> None:
    outbox.append([reading(i) for i in range(3)])
    assert outbox.acknowledge(3, START) == 3  # everything delivered: the outbox is empty
    outbox.close()
    box = reopen(path, key, clock)
    try:
        assert box.append([reading(9)]) == [4]
        assert box.stats().last_allocated == 4
    finally:
        box.close()


def test_acknowledge_deletes_the_prefix_and_records_the_receipt(outbox: SqliteOutbox, clock: ManualClock) -> None:
    outbox.append([reading(i) for i in range(10)])
    clock.advance(5)
    assert outbox.acknowledge(4, clock.now()) == 4
    stats = outbox.stats()
    assert (stats.depth, stats.first_seq, stats.last_receipt, stats.last_receipt_at) == (6, 5, 4, clock.now())
    assert outbox.acknowledge(2, clock.now()) == 0  # an older receipt changes nothing
    assert outbox.stats().last_receipt == 4


def test_overflow_drops_the_oldest_and_records_one_merged_gap(path: Path, key: bytes, clock: ManualClock) -> None:
    box = reopen(path, key, clock, max_readings=100)
    try:
        box.append([reading(i) for i in range(100)])
        box.append([reading(i) for i in range(30)])
        box.append([reading(i) for i in range(5)])
        stats = box.stats()
        assert (stats.depth, stats.first_seq, stats.last_allocated) == (100, 36, 135)
        assert stats.gaps == (SeqRange(first=1, last=35, reason="outbox_overflow"),)
        assert box.acknowledge(40, START) == 5
        assert box.gaps() == ()  # the server has seen past the gap
    finally:
        box.close()


def test_disk_full_evicts_the_oldest_as_a_gap_and_keeps_writing(path: Path, key: bytes, clock: ManualClock) -> None:
    box = reopen(path, key, clock, max_readings=10**7)
    try:
        pages = box._db.execute("PRAGMA page_count").fetchone()[0]
        box._db.execute(f"PRAGMA max_page_count = {pages + 8}")
        for i in range(150):  # far more than 8 pages hold
            box.append([reading(i * 10 + j) for j in range(20)])
        stats = box.stats()
        assert stats.last_allocated == 3000
        assert stats.gaps
        assert stats.gaps[0].first == 1
        assert stats.gaps[0].last + 1 == stats.first_seq  # contiguous: nothing lost silently
        assert box._db.execute("SELECT reason FROM gaps").fetchone()[0] == "disk_full"
    finally:
        box.close()


def test_cursor_commits_with_its_readings(outbox: SqliteOutbox) -> None:
    assert outbox.cursor("E0:00:00:00:00:06", "glucose") is None
    outbox.append([reading(1, metric="glucose", value=100)], cursor=Cursor("E0:00:00:00:00:06", "glucose", 7))
    assert outbox.cursor("E0:00:00:00:00:06", "glucose") == 7
    bad = dataclasses.replace(reading(2), device_id="E0:00:00:00:00:06")
    object.__setattr__(bad, "metric", "no_such_metric")  # a reading its checks would refuse
    with pytest.raises(KeyError):  # fails inside the transaction: neither the reading nor the cursor
        outbox._append([bad], Cursor("E0:00:00:00:00:06", "glucose", 8))
    assert outbox.cursor("E0:00:00:00:00:06", "glucose") == 7
    assert outbox.stats().last_allocated == 1
    outbox.append([], cursor=Cursor("E0:00:00:00:00:06", "glucose", 9))  # a control-solution record
    assert (outbox.cursor("E0:00:00:00:00:06", "glucose"), outbox.stats().last_allocated) == (9, 1)


def test_nothing_is_stored_in_clear(path: Path, outbox: SqliteOutbox) -> None:
    outbox.append([reading(i * 10, metric="spo2", value=93.25, device="E0:AA:BB:CC:DD:EE") for i in range(50)])
    outbox.close()
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith("outbox.db"))
    for secret in (b"spo2", b"E0:AA:BB:CC:DD:EE", b"sensor_contact", b"93.25"):
        assert secret not in raw


def test_a_row_moved_to_another_sequence_number_does_not_open_and_is_quarantined(
    outbox: SqliteOutbox, path: Path
) -> None:
    outbox.append([reading(i) for i in range(1, 6)])
    db = outbox._db
    sealed = db.execute("SELECT sealed FROM readings WHERE seq = 1").fetchone()[0]
    db.execute("UPDATE readings SET sealed = ? WHERE seq = 3", (sealed,))
    with pytest.raises(OutboxCorrupt) as caught:
        outbox._cipher.open(3, sealed)
    assert caught.value.seq == 3
    # fetch leaves it out, moves it aside (still sealed) and records a one-reading gap with a reason
    assert [r.seq for r in outbox.fetch(0, 10)] == [1, 2, 4, 5]
    assert db.execute("SELECT count(*) FROM readings WHERE seq = 3").fetchone()[0] == 0
    assert db.execute("SELECT sealed FROM quarantine WHERE seq = 3").fetchone()[0] == sealed
    assert [(q.seq, q.reason) for q in outbox.quarantined()] == [(3, "row does not authenticate")]
    stats = outbox.stats()
    assert stats.gaps == (SeqRange(first=3, last=3, reason="quarantined"),)
    assert (stats.depth, stats.quarantined) == (4, 1)  # the hole is not counted as waiting
    assert [r.seq for r in outbox.fetch(0, 10)] == [1, 2, 4, 5]  # once: nothing is quarantined twice
    local = inspect_outbox(path)
    assert (local.stats.depth, local.stats.quarantined, [q.seq for q in local.quarantined]) == (4, 1, [3])
    assert outbox.acknowledge(5, START) == 4
    assert outbox.gaps() == ()  # receipted past it: reported
    assert [q.seq for q in outbox.quarantined()] == [3]  # kept for whoever examines the card


def test_a_row_that_authenticates_but_no_longer_decodes_is_quarantined(outbox: SqliteOutbox) -> None:
    outbox.append([reading(1), reading(2)])
    outbox._db.execute("UPDATE readings SET sealed = ? WHERE seq = 2", (outbox._cipher.seal(2, b"\xff not cbor"),))
    assert [r.seq for r in outbox.fetch(0, 10)] == [1]
    assert [(q.seq, q.reason) for q in outbox.quarantined()] == [(2, "row does not decode")]


def test_overflow_past_a_quarantined_row_covers_it_in_one_gap(path: Path, key: bytes, clock: ManualClock) -> None:
    box = reopen(path, key, clock, max_readings=10)
    try:
        box.append([reading(i) for i in range(10)])
        box._db.execute("UPDATE readings SET sealed = x'00' WHERE seq IN (4, 9)")
        assert [r.seq for r in box.fetch(0, 10)] == [1, 2, 3, 5, 6, 7, 8, 10]
        assert [(g.first, g.last) for g in box.gaps()] == [(4, 4), (9, 9)]
        box.append([reading(i) for i in range(6)])  # drops the oldest six (1..6) as an overflow
        assert [(g.first, g.last, g.reason) for g in box.gaps()] == [(1, 6, "outbox_overflow"), (9, 9, "quarantined")]
        assert [r.seq for r in box.fetch(0, 20)] == [7, 8, 10, 11, 12, 13, 14, 15, 16]
        assert box.stats().depth == 9
    finally:
        box.close()


def test_a_version_1_outbox_is_upgraded_when_opened(path: Path, key: bytes, clock: ManualClock) -> None:
    db = sqlite3.connect(path)
    db.execute("DROP TABLE quarantine")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    assert inspect_outbox(path).quarantined == ()  # read-only: a version 1 outbox has no quarantine yet
    box = reopen(path, key, clock)
    try:
        assert box._db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert box.quarantined() == ()
    finally:
        box.close()


def test_open_refuses_what_it_must(path: Path, key: bytes, clock: ManualClock, tmp_path: Path) -> None:
    with pytest.raises(OutboxMissing):
        reopen(tmp_path / "nothing.db", key, clock)
    with pytest.raises(OutboxKeyMismatch):
        reopen(path, secrets.token_bytes(32), clock)
    with pytest.raises(OutboxKeyMismatch):
        SqliteOutbox.open(path, key=key, agent=AGENT, kid="another-identity", clock=clock, max_readings=10)
    with pytest.raises(OutboxError):
        SqliteOutbox.create(path, key=key, agent=AGENT, kid=KID, clock=clock)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 3")
    db.close()
    with pytest.raises(OutboxSchemaTooNew) as caught:
        reopen(path, key, clock)
    assert (caught.value.found, caught.value.supported) == (3, 2)


def test_inspect_reads_without_the_key(path: Path, outbox: SqliteOutbox, clock: ManualClock) -> None:
    outbox.append([reading(i) for i in range(4)])
    outbox.acknowledge(1, clock.now())
    outbox.set_registered(clock.now())
    outbox.save_devices([DeviceStatus(device_id="E0:00:00:00:00:01", profile="heart_rate", battery_pct=80)])
    outbox.save_state("alarms", ["clock_skew"])
    local = inspect_outbox(path)
    assert (local.stats.depth, local.stats.last_receipt, local.stats.registered_at) == (3, 1, clock.now())
    assert local.devices[0].battery_pct == 80
    assert local.state == {"alarms": ["clock_skew"]}
    assert outbox.integrity_check() == ["ok"]


def test_inspect_reads_one_snapshot_while_the_agent_writes(
    path: Path, outbox: SqliteOutbox, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `vigil edge status` reads while the agent runs: readings appended and a receipt applied between
    # its reads of the counters and of the oldest row must not show up half (a negative depth).
    import edge_agent.outbox.inspect as inspect_module
    from edge_agent.outbox.store import connect as real_connect

    outbox.append([reading(i) for i in range(5)])

    def connect_racing_the_agent(p: Path, *, read_only: bool = False) -> sqlite3.Connection:
        db = real_connect(p, read_only=read_only)
        raced: list[str] = []

        def trace(statement: str) -> None:
            if statement.startswith("SELECT seq, queued_at FROM readings") and not raced:
                raced.append(statement)
                outbox.append([reading(i) for i in range(5, 10)])
                outbox.acknowledge(8, clock.now())

        db.set_trace_callback(trace)
        return db

    monkeypatch.setattr(inspect_module, "connect", connect_racing_the_agent)
    stats = inspect_outbox(path).stats
    assert (stats.depth, stats.first_seq, stats.last_allocated, stats.last_receipt) in (
        (5, 1, 5, 0),  # before the agent's writes
        (2, 9, 10, 8),  # after them
    )


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(min_value=0, max_value=30)),
        st.tuples(st.just("ack"), st.integers(min_value=0, max_value=400)),
    ),
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_live_rows_stay_one_contiguous_range(tmp_path: Path, key: bytes, clock: ManualClock, ops: list) -> None:
    path = tmp_path / f"prop-{os.urandom(4).hex()}.db"
    SqliteOutbox.create(path, key=key, agent=AGENT, kid=KID, clock=clock)
    box = reopen(path, key, clock, max_readings=100)
    try:
        issued: list[int] = []
        for op, n in ops:
            if op == "append":
                issued += box.append([reading(i) for i in range(n)])
            else:
                box.acknowledge(n, clock.now())
            clock.advance(timedelta(seconds=1).total_seconds())
        assert issued == list(range(1, len(issued) + 1))  # strictly increasing, never reused
        stats = box.stats()
        count = box._db.execute("SELECT count(*) FROM readings").fetchone()[0]
        assert stats.depth == count
        seqs = [s for (s,) in box._db.execute("SELECT seq FROM readings ORDER BY seq")]
        assert seqs == list(range(seqs[0], seqs[0] + count)) if seqs else True
        covered = set(seqs)
        for g in stats.gaps:
            covered.update(range(g.first, g.last + 1))
        assert all(s in covered or s <= stats.last_receipt for s in issued)
    finally:
        box.close()


def test_the_enrollment_token_is_sealed_and_forgotten_when_registration_is_accepted(
    tmp_path: Path, key: bytes, clock: ManualClock
) -> None:
    path, token = tmp_path / "token.db", "one-time-token-" + secrets.token_hex(8)
    SqliteOutbox.create(path, key=key, agent=AGENT, kid=KID, clock=clock, enrollment_token=token)
    assert token.encode() not in path.read_bytes()  # sealed with the outbox key, never in clear
    box = reopen(path, key, clock)
    try:
        assert box.enrollment_token() == token
        box.set_registered(clock.now())  # the same transaction deletes it
        assert box.enrollment_token() is None
        assert box._db.execute("SELECT count(*) FROM meta WHERE key = 'enrollment_token'").fetchone() == (0,)
    finally:
        box.close()
    again = reopen(path, key, clock)
    try:
        assert again.enrollment_token() is None
    finally:
        again.close()


def test_close_for_move_refuses_an_outbox_in_use_and_folds_the_log(path: Path, outbox: SqliteOutbox) -> None:
    from edge_agent.errors import OutboxInUse
    from edge_agent.outbox.store import close_for_move

    outbox.append([reading(i) for i in range(3)])
    with pytest.raises(OutboxInUse):
        close_for_move(path)
    outbox.close()
    close_for_move(path)
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name)) == [path.name]
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM readings").fetchone() == (3,)
    finally:
        db.close()


def test_symbols_interned_by_another_connection_are_read_not_quarantined(
    path: Path, key: bytes, clock: ManualClock, outbox: SqliteOutbox
) -> None:
    other = reopen(path, key, clock)
    try:
        other.append([reading(1, metric="spo2", value=95, device="E0:00:00:00:00:09")])  # new symbols
    finally:
        other.close()
    assert [(r.seq, r.metric) for r in outbox.fetch(0, 10)] == [(1, "spo2")]
    assert outbox.quarantined() == ()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB filesystem (tmpfs), so the disk really fills: SQLite's log writes fail too."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a filler file until the filesystem says no more (ENOSPC)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 512)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return filler
    finally:
        os.close(fd)


def append_until_full(box: SqliteOutbox) -> int:
    """Append until the outbox raises :class:`OutboxFull` (the log's slack may take a few writes)."""
    for i in range(1000):
        try:
            box.append([reading(i) for _ in range(20)])
        except OutboxFull:
            return i
    raise AssertionError("the disk never filled")


def test_catalogue_11_disk_full_when_eviction_itself_fails_still_records_the_gap(
    small_disk: Path, key: bytes, clock: ManualClock
) -> None:
    path = small_disk / "outbox.db"
    SqliteOutbox.create(path, key=key, agent=AGENT, kid=KID, clock=clock)
    box = reopen(path, key, clock, max_readings=10**7)
    try:
        assert box.append([reading(i) for i in range(50)]) == list(range(1, 51))
        filler = fill(small_disk)
        append_until_full(box)  # the write, the eviction and the gap's own small write: all refused
        lost = box.lost_unrecorded
        assert lost == 20  # not even the gap could be written: kept to record at the next write
        stats = box.stats()
        assert stats.first_seq == 1  # the eviction itself failed (rolled back): nothing was dropped
        first_lost = stats.last_allocated + 1
        filler.unlink()  # room again (as after the uplink drained receipted rows)
        seqs = box.append([reading(1)])
        assert box.lost_unrecorded == 0
        assert seqs == [first_lost + lost]  # the lost readings took their sequence numbers
        gaps = box.gaps()
        assert SeqRange(first=first_lost, last=first_lost + lost - 1, reason="disk_full") in gaps
        covered = {s for g in gaps for s in range(g.first, g.last + 1)}
        live = {r.seq for r in box.fetch(0, 10_000)}
        assert set(range(1, seqs[0] + 1)) == covered | live  # every number issued: delivered or a gap
        assert box.integrity_check() == ["ok"]
    finally:
        box.close()
