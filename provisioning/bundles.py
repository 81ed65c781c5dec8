"""Enrollment bundles: what a new agent is given, and what the server keeps of it.

:func:`new_enrollment` is pure of the database and the broker: it checks the ids, generates the
agent's broker password and one-time enrollment token, and returns the bundle together with what
must be stored (the password's ``$7$`` hash, the token's SHA-256, the expiry, the broker account).
:func:`provisioning.agents.create_agent` stores it and creates the broker account. A caller that
hands bundles out another way (the clinician API's enrolment over HTTP) uses the same pair.

The bundle holds the broker password and the token: it is a secret. Nothing here prints, logs or
writes it; :meth:`Enrollment.__repr__` names the agent only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from broker_config.accounts import BrokerAccount, agent_account, check_agent_name
from broker_config.errors import AccountError
from broker_config.passwords import hash_password, new_password
from provisioning.errors import InvalidRequest, translating
from provisioning.keys import ca_of, keyring
from provisioning.settings import ProvisioningSettings
from rpm_core import ids
from rpm_core.enrollment import BrokerEndpoint, EnrollmentBundle, Secret, ServerKeyInfo, new_token, token_digest
from rpm_core.ids import AgentId, OrgId, PatientId

__all__ = ["MAX_SERVER_KEYS", "Enrollment", "new_enrollment"]

MAX_SERVER_KEYS = 4  # server key generations named in a bundle, current first


@dataclass(frozen=True, slots=True)
class Enrollment:
    """A new agent's bundle and what the server stores of it (never the password or the token)."""

    org_id: OrgId
    patient_id: PatientId
    agent_id: AgentId
    bundle: EnrollmentBundle = field(repr=False)
    password_hash: str = field(repr=False)  # Mosquitto's $7$ form: the agents row and the broker file
    token_sha256: bytes = field(repr=False)
    account: BrokerAccount = field(repr=False)  # the agent's broker account (client, client id, role)

    @property
    def expires_at(self) -> datetime:
        return self.bundle.expires_at

    @property
    def password(self) -> str:
        """The plaintext broker password (for the running broker's control API only)."""
        return self.bundle.mqtt_password.get_secret_value()


def _agent(agent: str | None) -> AgentId:
    if agent is None:
        return AgentId(ids.new_id("agt"))
    try:
        return AgentId(check_agent_name(ids.agent_id(agent)))
    except AccountError as exc:
        raise InvalidRequest("agent_id", exc.why, str(exc)) from exc


def new_enrollment(
    settings: ProvisioningSettings,
    *,
    org_id: str,
    patient_id: str,
    agent_id: str | None = None,
    now: datetime,
) -> Enrollment:
    """A bundle for a new agent of ``org_id`` assigned to ``patient_id`` (``agent_id``: default a new
    ``agt-…``; the ``vigil-`` prefix is reserved). Raises :class:`InvalidRequest` for an id that is
    not valid or reserved, :class:`ServerKeyError` before ``init_keys``. Writes nothing but the CA
    when there is none yet; does not check that the organisation or patient exist (storing does).
    """
    with translating():
        oid, pid, aid = ids.org_id(org_id), ids.patient_id(patient_id), _agent(agent_id)
        password, token = new_password(), new_token()
        password_hash = hash_password(password)
        try:
            account = agent_account(oid, aid, password_hash)
        except AccountError as exc:
            raise InvalidRequest("org_id", exc.why, str(exc)) from exc
        ring = keyring(settings)
        bundle = EnrollmentBundle(
            org=oid,
            agent_id=aid,
            broker=BrokerEndpoint(
                host=settings.broker_host,
                port=settings.broker_port,
                server_name=settings.broker_host,
                ca_pem=ca_of(settings, now=now).cert_pem().decode(),
            ),
            mqtt_username=aid,
            mqtt_password=Secret(password),
            enrollment_token=Secret(token),
            server_keys=tuple(ServerKeyInfo.of(k) for k in ring.public_keys()[:MAX_SERVER_KEYS]),
            expires_at=now + timedelta(hours=settings.enrollment_ttl_hours),
        )
    return Enrollment(oid, pid, aid, bundle, password_hash, token_digest(token), account)
