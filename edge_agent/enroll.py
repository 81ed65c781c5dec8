"""``vigil edge enroll --bundle FILE``: give this Pi its identity.

1. Read and check the bundle from ``vigil agents create`` (not expired).
2. With ``force`` and an existing outbox: retire the old identity (:mod:`edge_agent.retired`): the
   old outbox, its key and a copy of the old identity files move together into
   ``{state_dir}/retired/{time}-{old agent}/``, so the readings it had not delivered stay readable
   and the re-enrolled agent delivers them. Refused, changing nothing, while the agent runs.
3. Generate the agent's Ed25519 and X25519 keys here, plus the outbox key; write them and what the
   agent needs from the bundle (CA, server keys, MQTT credentials) into the enrollment directory
   (:mod:`edge_agent.identity`; directories 0700, private files 0600, owned by the service user
   when it exists).
4. Create the empty outbox in the state directory (0700), bound to these keys and holding the
   one-time enrollment token (sealed; deleted when the registration is accepted): its sequence
   numbers start at 1 for this identity, and ``vigil edge run`` refuses to start without it (a lost
   state directory must not silently restart the numbering).
5. Write ``agent.toml`` (broker, ids, paths, time zone; an existing allow-list is kept).

The public keys reach the server on the agent's first connection (its registration). Enrolling
again replaces the identity and needs a new bundle.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge_agent.config_file import read_config, write_config
from edge_agent.errors import EnrollmentError
from edge_agent.identity import IdentityFiles, write_identity
from edge_agent.outbox import SqliteOutbox
from edge_agent.retired import retire_identity
from edge_agent.settings import CONFIG_NAME, PairedDevice
from rpm_core.clock import Clock
from rpm_core.enrollment import EnrollmentBundle
from rpm_core.errors import ConfigError
from rpm_core.keys import AgentKeys
from rpm_core.keystore import ensure_private_dir

__all__ = ["SERVICE_USER", "EnrollResult", "enroll", "system_time_zone"]

SERVICE_USER: Final = "vigil-edge"


@dataclass(frozen=True, slots=True)
class EnrollResult:
    agent: str
    sign_kid: str
    config: Path
    outbox: Path
    broker: tuple[str, int]  # host and port from the bundle
    retired: Path | None = None  # where the replaced identity and its undelivered readings went


def system_time_zone() -> str:
    """This machine's IANA zone (from /etc/localtime), or UTC."""
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return "UTC"
    marker = "zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else "UTC"


def _owner(user: str | None) -> tuple[int, int] | None:
    if user is None or os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def enroll(
    bundle_path: Path,
    *,
    directory: Path,
    state_dir: Path,
    clock: Clock,
    time_zone: str,
    owner: str | None = SERVICE_USER,
    force: bool = False,
) -> EnrollResult:
    try:
        bundle = EnrollmentBundle.read(bundle_path)
    except ConfigError as exc:
        raise EnrollmentError(exc.why, path=bundle_path) from exc
    if bundle.expires_at <= clock.now():
        raise EnrollmentError("the bundle has expired; ask for a new one (vigil agents create)", path=bundle_path)
    files = IdentityFiles(directory)
    outbox_path = state_dir / "outbox.db"
    if (files.sign_key.exists() or outbox_path.exists()) and not force:
        raise EnrollmentError("already enrolled; --force replaces the identity (with a new bundle)", path=directory)
    ids = _owner(owner)
    config = directory / CONFIG_NAME
    previous = read_config(config)
    retired = None
    if force:
        ensure_private_dir(state_dir)
        retired = retire_identity(
            directory, state_dir, config=previous, replaced_by=bundle.agent_id, org=bundle.org, clock=clock, owner=ids
        )
    keys = AgentKeys.generate()
    outbox_key = write_identity(directory, bundle, keys, owner=ids)
    ensure_private_dir(state_dir)
    SqliteOutbox.create(
        outbox_path,
        key=outbox_key,
        agent=bundle.agent_id,
        kid=keys.public().kex_kid,
        clock=clock,
        enrollment_token=bundle.enrollment_token.get_secret_value(),
    )
    if ids is not None:
        os.chown(state_dir, *ids)
        for path in (outbox_path, *outbox_path.parent.glob(outbox_path.name + "-*")):
            os.chown(path, *ids)
    values = {
        "org": bundle.org,
        "agent_id": bundle.agent_id,
        "broker_host": bundle.broker.host,
        "broker_port": bundle.broker.port,
        "broker_server_name": bundle.broker.server_name,
        "enrollment_dir": directory,
        "state_dir": state_dir,
        "time_zone": previous.get("time_zone", time_zone),
    }
    keep = {k: v for k, v in previous.items() if k not in values and k != "devices"}
    devices = [PairedDevice.from_doc(d, at=f"devices.{i}.") for i, d in enumerate(previous.get("devices", []))]
    write_config(config, {**values, **keep}, devices)
    if ids is not None:
        os.chown(config, *ids)
    broker = (bundle.broker.host, bundle.broker.port)
    return EnrollResult(bundle.agent_id, keys.public().sign_kid, config, outbox_path, broker, retired)
