"""Edge agents: create (with their broker account and enrollment bundle), assign, revoke, list.

Lifecycle (docs/provisioning.md): ``pending`` (created, holding the hash of its broker password
and of a one-time enrollment token) -> ``active`` (ingest accepted its registration) ->
``revoked`` (its broker account is gone and ingest refuses its keys). Creating and revoking change
the broker in step with the database (:func:`provisioning.broker.commit_with_broker`): both happen
or neither. Assignments to patients form a history; re-assigning closes the open one.

Nothing here prints: callers get values (a :class:`CreatedAgent` holds the bundle, a secret) and
a line for the operator where the broker was involved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from provisioning.broker import APPLICATION_NAME, commit_with_broker
from provisioning.bundles import Enrollment
from provisioning.errors import translating
from provisioning.settings import ProvisioningSettings
from rpm_core import ids
from rpm_core.clock import Clock, SystemClock
from rpm_core.enrollment import EnrollmentBundle
from store import agents as store
from store.agents import AgentStatusName
from store.transaction import transaction

__all__ = ["AgentSummary", "CreatedAgent", "assign_agent", "create_agent", "list_agents", "revoke_agent"]

_SYSTEM_CLOCK = SystemClock()


@dataclass(frozen=True, slots=True)
class CreatedAgent:
    agent_id: str
    bundle: EnrollmentBundle = field(repr=False)  # holds the broker password and the token: a secret
    note: str  # how the broker took the new account (a line for the operator's log)

    @property
    def bundle_json(self) -> str:
        return self.bundle.to_json()


@dataclass(frozen=True, slots=True)
class AgentSummary:
    agent_id: str
    org_id: str
    status: AgentStatusName  # pending, active or revoked
    patient_id: str | None  # the current (for a revoked agent: the last) assignment
    last_seen_at: datetime | None  # the last envelope ingest accepted from it


def create_agent(
    settings: ProvisioningSettings, enrollment: Enrollment, *, clock: Clock = _SYSTEM_CLOCK
) -> CreatedAgent:
    """Store ``enrollment`` (from :func:`provisioning.bundles.new_enrollment`) as a pending agent assigned
    to its patient, create its broker account, and commit; both or neither.

    Raises :class:`NotFound` (organisation, patient), :class:`Conflict` (the id is taken, revoked
    agents included), :class:`BrokerError` (the broker refused the account, e.g. it holds one of that
    name already) or :class:`DatabaseError`; nothing is left behind then.
    """
    with translating(), transaction(settings.database_url, application_name=APPLICATION_NAME) as tx:
        store.create_agent(
            tx.conn,
            org_id=enrollment.org_id,
            agent_id=enrollment.agent_id,
            patient_id=enrollment.patient_id,
            password_hash=enrollment.password_hash,
            token_sha256=enrollment.token_sha256,
            expires_at=enrollment.expires_at,
            now=clock.now(),
        )
        note = commit_with_broker(settings, tx, create=(enrollment.account, enrollment.password))
    return CreatedAgent(enrollment.agent_id, enrollment.bundle, note)


def revoke_agent(
    settings: ProvisioningSettings, agent_id: str, *, org_id: str | None = None, clock: Clock = _SYSTEM_CLOCK
) -> str:
    """Revoke the agent: its broker account is deleted (a running broker disconnects it at once) and
    ingest refuses its keys from then on. A line for the operator.

    ``org_id`` scopes the request to one organisation (the clinician API passes the caller's): an
    agent of another organisation is :class:`NotFound`, exactly like one that does not exist.
    """
    with translating():
        aid = ids.agent_id(agent_id)
        oid = ids.org_id(org_id) if org_id is not None else None
        with transaction(settings.database_url, application_name=APPLICATION_NAME) as tx:
            store.revoke_agent(tx.conn, aid, now=clock.now(), org_id=oid)
            return commit_with_broker(settings, tx, delete=aid)


def assign_agent(
    settings: ProvisioningSettings,
    agent_id: str,
    *,
    patient_id: str,
    org_id: str | None = None,
    clock: Clock = _SYSTEM_CLOCK,
) -> None:
    """Assign the agent to ``patient_id`` of its own organisation from now on (a patient of another
    is :class:`NotFound`); the previous assignment is kept as history. :class:`Conflict` for a
    revoked agent. ``org_id`` scopes the request as in :func:`revoke_agent`."""
    with translating():
        aid, pid = ids.agent_id(agent_id), ids.patient_id(patient_id)
        oid = ids.org_id(org_id) if org_id is not None else None
        with transaction(settings.database_url, application_name=APPLICATION_NAME) as tx:
            store.assign_agent(tx.conn, aid, pid, now=clock.now(), org_id=oid)
            tx.commit()


def list_agents(settings: ProvisioningSettings, *, org_id: str | None = None) -> list[AgentSummary]:
    """Every agent (of ``org_id``, or of every organisation) with its status, by organisation and id."""
    with translating():
        oid = ids.org_id(org_id) if org_id is not None else None
        with transaction(settings.database_url, application_name=APPLICATION_NAME) as tx:
            rows = store.list_agents(tx.conn, org_id=oid)
    return [AgentSummary(r.agent_id, r.org_id, r.status, r.patient_id, r.last_seen_at) for r in rows]
