"""Retired identities: what ``vigil edge enroll --force`` keeps of the identity it replaces, and how the
readings it had not delivered still reach the server.

Re-enrolling gives the Pi a new agent id, new keys and a new outbox. Readings the old identity
had not delivered yet are sealed in the old outbox with the old outbox key; both are kept
together with the rest of the old identity in one directory::

    {state_dir}/retired/{YYYYmmddTHHMMSSZ}-{old agent id}/        0700
        retired.json         org, agent, broker endpoint, retired_at, replaced_by
        outbox.db            the old outbox, closed into one file (no -wal/-shm)
        credentials.json, ca.pem, server_keys.json                  copies, 0600
        keys/sign.pem, keys/kex.pem, keys/outbox.key                copies, 0600

It is created as ``.{name}.partial`` and renamed when complete, so a power cut leaves either the
old layout or a whole retired directory (an interrupted one is completed or removed by the next
:func:`retire_identity`). Retiring refuses (:class:`~edge_agent.errors.OutboxInUse`, nothing
changed) while another process has the old outbox open: stop the agent first.

Delivering, automatically (:func:`deliver_retired`, run by the agent beside its own uplink): the
retired identity connects with its own credentials and client id, registers if it never did
(with the token its outbox still holds), and sends its readings signed with its own keys under
its own sequence numbers. The server cannot tell them from readings the old identity would have
sent itself: same agent id, patient assignment, deduplication. When the last one is receipted
the directory, old private keys included, is deleted.

Adopting, by the operator (:func:`adopt_retired`, ``vigil edge outbox adopt DIR``), when the old
identity cannot deliver any more (its agent revoked, its bundle expired before it registered, its
signing key lost): each reading is re-sealed into the current outbox under the current identity,
with the same device, metric, value and times and three more flags saying where it comes from::

    reenrolled                       re-sent by the identity that replaced the one that measured it
    reenrolled_from:{old agent id}   that identity (when the flag fits the 48-character limit)
    reenrolled_seq:{n}               its sequence number there

Appending a batch and recording how far the retired outbox was adopted happen in one transaction
of the current outbox (its ``cursors`` table), and only then are the rows deleted from the retired
outbox, so a crash neither loses nor doubles a reading. Adopted readings belong to the current
agent's patient. A reading the old identity delivered but whose receipt it never saw may reach
the server twice (once under each identity); the flags make the pair recognisable.

Only one process works on a retired directory at a time (``flock`` on the directory): adopting
while the agent delivers it is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from edge_agent.errors import EdgeError, EnrollmentError, OutboxError, OutboxInUse
from edge_agent.identity import AgentIdentity, IdentityFiles
from edge_agent.mqtt import MqttLink, MqttOptions
from edge_agent.outbox import AsyncOutbox, SqliteOutbox, inspect_outbox
from edge_agent.outbox.store import Cursor, close_for_move, read_meta
from edge_agent.state import AgentState
from edge_agent.uplink import Uplink, UplinkOptions
from rpm_core.clock import Clock
from rpm_core.ids import AgentId, OrgId, agent_id, org_id
from rpm_core.keystore import ensure_private_dir, write_private
from rpm_core.reading import MAX_FLAGS, Reading, SeqRange

__all__ = [
    "ADOPTED_CURSOR",
    "RETIRED_DIR",
    "AdoptResult",
    "RetiredIdentity",
    "adopt_retired",
    "deliver_retired",
    "describe",
    "describe_all",
    "list_retired",
    "provenance_flags",
    "retire_identity",
]

_log = logging.getLogger(__name__)
RETIRED_DIR: Final = "retired"
ADOPTED_CURSOR: Final = "adopted"  # cursors(device_id = old agent id, kind) in the current outbox
_RECORD: Final = "retired.json"
_OUTBOX: Final = "outbox.db"
_PARTIAL: Final = ".partial"
_ADOPT_BATCH: Final = 200


@dataclass(frozen=True, slots=True)
class RetiredIdentity:
    """One retired directory, as ``retired.json`` and the old outbox describe it."""

    path: Path
    org: OrgId
    agent: AgentId
    broker_host: str | None
    broker_port: int | None
    broker_server_name: str | None
    retired_at: str
    replaced_by: str

    @property
    def outbox(self) -> Path:
        return self.path / _OUTBOX

    @classmethod
    def load(cls, path: Path) -> RetiredIdentity:
        try:
            doc = json.loads((path / _RECORD).read_text())
            return cls(
                path=path,
                org=org_id(str(doc["org"])),
                agent=agent_id(str(doc["agent"])),
                broker_host=doc.get("broker_host"),
                broker_port=doc.get("broker_port"),
                broker_server_name=doc.get("broker_server_name"),
                retired_at=str(doc.get("retired_at", "")),
                replaced_by=str(doc.get("replaced_by", "")),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:  # InvalidIdentifier is a ValueError
            raise EnrollmentError("not a retired identity (retired.json missing or damaged)", path=path) from exc


def list_retired(state_dir: Path) -> list[Path]:
    """The complete retired directories that still hold an outbox, oldest first."""
    root = state_dir / RETIRED_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if not p.name.startswith(".") and (p / _OUTBOX).is_file())


# -- retiring (vigil edge enroll --force) --------------------------------------------------------


def _finish_interrupted(root: Path) -> None:
    """A retirement cut short: complete it when the outbox had moved already, else drop the copies."""
    for partial in root.glob(f".*{_PARTIAL}"):
        if (partial / _OUTBOX).is_file():
            os.replace(partial, root / partial.name[1 : -len(_PARTIAL)])
        else:
            shutil.rmtree(partial)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def retire_identity(
    directory: Path,
    state_dir: Path,
    *,
    config: dict[str, Any],
    replaced_by: AgentId,
    org: OrgId,
    clock: Clock,
    owner: tuple[int, int] | None = None,
) -> Path | None:
    """Move the current outbox and a copy of the identity that opens it into a retired directory.

    ``config`` is the old ``agent.toml`` (org and broker endpoint; ``org``, the new bundle's, stands
    in when it is unreadable). Returns the directory, or None when there is no outbox to keep.
    Raises :class:`OutboxInUse` (nothing changed) when the agent still has the outbox open.
    """
    root = state_dir / RETIRED_DIR
    if root.is_dir():
        _finish_interrupted(root)
    outbox = state_dir / _OUTBOX
    if not outbox.is_file():
        return None
    close_for_move(outbox)
    meta = read_meta(outbox, "agent")
    old_agent = agent_id(str(meta.get("agent") or config.get("agent_id")))
    name = f"{clock.now().strftime('%Y%m%dT%H%M%SZ')}-{old_agent}"
    ensure_private_dir(root)
    partial = root / f".{name}{_PARTIAL}"
    ensure_private_dir(partial)
    ensure_private_dir(partial / "keys")
    files = IdentityFiles(directory)
    for source in files.all_files():
        if source.is_file():
            write_private(partial / source.relative_to(directory), source.read_bytes())
    record = {
        "org": config.get("org") or org,
        "agent": old_agent,
        "broker_host": config.get("broker_host"),
        "broker_port": config.get("broker_port"),
        "broker_server_name": config.get("broker_server_name"),
        "retired_at": clock.now().isoformat(),
        "replaced_by": replaced_by,
    }
    write_private(partial / _RECORD, json.dumps(record, indent=2).encode())
    os.replace(outbox, partial / _OUTBOX)
    for suffix in ("-wal", "-shm", "-journal"):  # none after close_for_move; never keep a stale one
        outbox.with_name(outbox.name + suffix).unlink(missing_ok=True)
    _fsync(partial)
    final = root / name
    os.replace(partial, final)
    _fsync(root)
    _fsync(state_dir)
    if owner is not None:
        for path in (root, final, *final.rglob("*")):
            os.chown(path, *owner, follow_symlinks=False)
    return final


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold the retired directory for this process, or :class:`OutboxInUse`."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise OutboxInUse(path) from exc
        yield
    finally:
        os.close(fd)


# -- delivering as the old identity (the running agent) ------------------------------------------


async def deliver_retired(
    retired: RetiredIdentity,
    identity: AgentIdentity,
    *,
    uplink_options: UplinkOptions,
    mqtt_options: MqttOptions,
    clock: Clock,
    max_readings: int,
) -> int:
    """Send the retired outbox's readings as ``identity`` until every one is receipted; then delete it.

    Returns how many readings were delivered. Runs until done or cancelled (the agent stops);
    the outbox keeps whatever is not receipted yet for the next run.
    """
    stack = contextlib.ExitStack()
    await asyncio.to_thread(stack.enter_context, _exclusive(retired.path))
    try:
        outbox = await AsyncOutbox.open(
            retired.outbox,
            key=identity.outbox_key,
            agent=identity.agent,
            kid=identity.keys.public().kex_kid,
            clock=clock,
            max_readings=max_readings,
        )
        try:
            delivered = await _drain(outbox, identity, uplink_options, mqtt_options, clock)
        finally:
            await outbox.close()
        await asyncio.to_thread(shutil.rmtree, retired.path)
    finally:
        await asyncio.to_thread(stack.close)
    _log.info("retired identity %s: %d reading(s) delivered; its keys and outbox deleted", retired.agent, delivered)
    return delivered


async def _drain(
    outbox: AsyncOutbox, identity: AgentIdentity, options: UplinkOptions, mqtt: MqttOptions, clock: Clock
) -> int:
    start = await outbox.stats()
    if start.depth == 0:
        return 0
    state = AgentState((), clock=clock, clock_skew_threshold_s=120.0)
    uplink = Uplink(identity=identity, options=options, outbox=outbox, state=state, clock=clock)
    link = MqttLink(mqtt, listener=uplink, will=uplink.will, loop=asyncio.get_running_loop())
    uplink.publisher = link
    link.start()
    running = asyncio.create_task(uplink.run())
    try:
        while True:
            uplink.receipted.clear()
            if (await outbox.stats()).depth == 0:
                break
            waiter = asyncio.create_task(uplink.receipted.wait())
            done, _ = await asyncio.wait({running, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if running in done:
                running.result()  # raises what ended the uplink
                raise EnrollmentError("the retired identity's uplink stopped", path=None)
        await uplink.goodbye()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await link.stop()
    return start.depth


# -- adopting under the current identity (vigil edge outbox adopt) --------------------------------


@dataclass(frozen=True, slots=True)
class AdoptResult:
    agent: AgentId
    adopted: int
    gaps: tuple[SeqRange, ...]  # ranges the old outbox had dropped (overflow) before it was retired


def provenance_flags(old_agent: str, seq: int) -> tuple[str, ...]:
    """The flags an adopted reading gains, most important first."""
    flags = ["reenrolled"]
    if len(f"reenrolled_from:{old_agent}") <= 48:
        flags.append(f"reenrolled_from:{old_agent}")
    flags.append(f"reenrolled_seq:{seq}")
    return tuple(flags)


def _adopted(reading: Reading, new_agent: AgentId, old_agent: str) -> Reading:
    extra = provenance_flags(old_agent, reading.seq)
    room = MAX_FLAGS - len(reading.flags)
    if room < 1:
        raise OutboxError(f"reading {reading.seq} carries {len(reading.flags)} flags: no room to mark it adopted")
    return Reading(
        agent_id=new_agent,
        device_id=reading.device_id,
        seq=0,
        metric=reading.metric,
        value=reading.value,
        measured_at=reading.measured_at,
        device_time=reading.device_time,
        flags=reading.flags | frozenset(extra[:room]),
    )


def adopt_retired(
    path: Path, *, current: SqliteOutbox, identity: AgentIdentity, clock: Clock, batch: int = _ADOPT_BATCH
) -> AdoptResult:
    """Re-seal every reading of the retired directory ``path`` into ``current``; then delete ``path``.

    Needs only the retired outbox and its outbox key (not the old signing key). Raises
    :class:`OutboxInUse` while the agent delivers ``path``.
    """
    with _exclusive(path):
        key_file = path / "keys" / "outbox.key"
        if not (path / _OUTBOX).is_file() or not key_file.is_file():
            raise EnrollmentError("no retired outbox and outbox key here", path=path)
        meta = read_meta(path / _OUTBOX, "agent", "kid")
        old_agent = agent_id(str(meta.get("agent")))
        old = SqliteOutbox.open(
            path / _OUTBOX,
            key=key_file.read_bytes(),
            agent=old_agent,
            kid=str(meta.get("kid")),
            clock=clock,
            max_readings=2**62,
        )
        try:
            adopted = _copy(old, current, old_agent, identity.agent, clock, batch)
            gaps = old.gaps()
        finally:
            old.close()
        shutil.rmtree(path)
    return AdoptResult(old_agent, adopted, gaps)


def _copy(old: SqliteOutbox, current: SqliteOutbox, old_agent: AgentId, new: AgentId, clock: Clock, n: int) -> int:
    done = current.cursor(old_agent, ADOPTED_CURSOR) or 0
    adopted = 0
    while old.backlog(done, 1).count:
        readings = old.fetch(done, n)
        if not readings:  # every row fetched was quarantined (and so left the readings): go on
            continue
        last = readings[-1].seq
        current.append([_adopted(r, new, old_agent) for r in readings], cursor=Cursor(old_agent, ADOPTED_CURSOR, last))
        old.acknowledge(last, clock.now())
        done, adopted = last, adopted + len(readings)
    old.acknowledge(done, clock.now())  # rows adopted before an interruption
    return adopted


def describe(path: Path) -> dict[str, Any]:
    """What ``vigil edge status`` shows of one retired directory (read without any key)."""
    try:
        record: Any = RetiredIdentity.load(path)
        agent, retired_at = str(record.agent), record.retired_at
    except EdgeError:
        agent, retired_at = str(read_meta(path / _OUTBOX, "agent").get("agent")), None
    stats = inspect_outbox(path / _OUTBOX).stats
    oldest: datetime | None = stats.oldest_queued_at
    return {
        "path": str(path),
        "agent": agent,
        "retired_at": retired_at,
        "depth": stats.depth,
        "oldest_queued_at": None if oldest is None else oldest.isoformat(),
        "registered": stats.registered_at is not None,
    }


def describe_all(state_dir: Path) -> Sequence[dict[str, Any]]:
    return [describe(p) for p in list_retired(state_dir)]
