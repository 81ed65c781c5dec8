"""Organisations and patients, as far as provisioning needs them (create; the clinician API owns the rest).

Every agent belongs to one organisation and is assigned to one of its patients at a time, so both
must exist before an agent is created. A patient's name is PHI: it is stored, never logged or put
in a message.
"""

from __future__ import annotations

from provisioning.broker import APPLICATION_NAME
from provisioning.errors import translating
from provisioning.settings import ProvisioningSettings
from rpm_core import ids
from store import patients as store
from store.transaction import transaction

__all__ = ["create_org", "create_patient"]


def create_org(settings: ProvisioningSettings, org_id: str, *, name: str) -> None:
    """A new organisation (:class:`Conflict` when the id is taken, :class:`InvalidRequest` when not valid)."""
    with translating():
        oid = ids.org_id(org_id)
        with transaction(settings.database_url, application_name=APPLICATION_NAME) as tx:
            store.create_org(tx.conn, oid, name)
            tx.commit()


def create_patient(settings: ProvisioningSettings, patient_id: str, *, org_id: str, name: str) -> None:
    """A new patient of ``org_id`` (:class:`NotFound` without the organisation, :class:`Conflict` when taken)."""
    with translating():
        oid, pid = ids.org_id(org_id), ids.patient_id(patient_id)
        with transaction(settings.database_url, application_name=APPLICATION_NAME) as tx:
            store.create_patient(tx.conn, org_id=oid, patient_id=pid, display_name=name)
            tx.commit()
