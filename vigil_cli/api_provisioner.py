"""The provisioning the clinician API's fleet routes use (``clinician_api.provisioning.Provisioner``),
wired through the ``vigil.provisioner`` entry point: ``vigil api`` loads it by name, so neither
package imports the other. It does what ``vigil agents create`` and ``vigil agents revoke`` do,
with the same settings (``ProvisioningSettings`` from the environment and the TOML file).

Issue 11 moves provisioning into its own package; this adapter then points there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from pydantic import SecretStr

from broker_config.accounts import agent_account
from broker_config.passwords import hash_password, new_password
from rpm_core.enrollment import BrokerEndpoint, EnrollmentBundle, ServerKeyInfo, new_token, token_digest
from rpm_core.ids import AgentId, OrgId, new_id
from rpm_core.ids import org_id as org_id_of
from rpm_core.ids import patient_id as patient_id_of
from rpm_core.keystore import load_server_keys
from rpm_core.settings import load_settings
from store.agents import create_agent, revoke_agent
from vigil_cli.provisioning import ProvisioningSettings, ca_of, commit_with_broker

__all__ = ["ApiProvisioner", "ProvisionedBundle", "provisioner"]


class ProvisionedBundle:
    """Structurally ``clinician_api.provisioning.ProvisionedAgent``."""

    def __init__(self, agent_id: str, bundle_json: str) -> None:
        self.agent_id = agent_id
        self.bundle_json = bundle_json


class ApiProvisioner:
    def __init__(self, settings: ProvisioningSettings) -> None:
        self.settings = settings

    def _bundle(self, org: OrgId, agent: AgentId, password: str, token: str) -> EnrollmentBundle:
        s = self.settings
        ring = load_server_keys(s.key_dir)
        return EnrollmentBundle(
            org=org,
            agent_id=agent,
            broker=BrokerEndpoint(
                host=s.broker_host, port=s.broker_port, server_name=s.broker_host, ca_pem=ca_of(s).cert_pem().decode()
            ),
            mqtt_username=agent,
            mqtt_password=SecretStr(password),
            enrollment_token=SecretStr(token),
            server_keys=tuple(ServerKeyInfo.of(k) for k in ring.public_keys()[:4]),
            expires_at=datetime.now(UTC) + timedelta(hours=s.enrollment_ttl_hours),
        )

    def _connect(self) -> psycopg.Connection[Any]:
        """Not autocommit: commit_with_broker applies the change to the broker before the COMMIT."""
        return psycopg.connect(self.settings.database_url, application_name="vigil-api-provisioning")

    def create_agent(self, *, org_id: str, patient_id: str) -> ProvisionedBundle:
        aid = AgentId(new_id("agt"))
        password, token = new_password(), new_token()
        password_hash = hash_password(password)
        bundle = self._bundle(org_id_of(org_id), aid, password, token)
        account = agent_account(org_id, aid, password_hash)
        with self._connect() as conn:
            create_agent(
                conn,
                org_id=org_id,
                agent_id=aid,
                patient_id=patient_id_of(patient_id),
                password_hash=password_hash,
                token_sha256=token_digest(token),
                expires_at=bundle.expires_at,
                now=datetime.now(UTC),
            )
            # The broker account exists before the COMMIT, or neither does (as `vigil agents create`).
            commit_with_broker(self.settings, conn, create=(account, password))
        return ProvisionedBundle(aid, bundle.to_json())

    def revoke_agent(self, agent_id: str) -> str:
        with self._connect() as conn:
            revoke_agent(conn, agent_id, now=datetime.now(UTC))
            return commit_with_broker(self.settings, conn, delete=agent_id)


def provisioner(config_file: Path | None) -> ApiProvisioner:
    """The entry point's factory: settings from ``config_file`` (or VIGIL_CONFIG) and the environment."""
    return ApiProvisioner(load_settings(ProvisioningSettings, config_file=config_file))
