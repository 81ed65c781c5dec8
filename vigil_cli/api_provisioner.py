"""The provisioning the clinician API's fleet routes use (``clinician_api.provisioning.Provisioner``),
wired through the ``vigil.provisioner`` entry point: ``vigil api`` loads it by name, so neither
package imports the other. It calls :mod:`provisioning` exactly as ``vigil agents create`` and
``vigil agents revoke`` do, with the same settings (``ProvisioningSettings`` from the environment
and the TOML file, built once when the API starts). Errors are provisioning's
(:mod:`provisioning.errors`).
"""

from __future__ import annotations

from pathlib import Path

from provisioning import agents
from provisioning.bundles import new_enrollment
from provisioning.settings import ProvisioningSettings
from rpm_core.clock import Clock, SystemClock
from rpm_core.settings import load_settings

__all__ = ["ApiProvisioner", "ProvisionedBundle", "provisioner"]


class ProvisionedBundle:
    """Structurally ``clinician_api.provisioning.ProvisionedAgent``."""

    def __init__(self, agent_id: str, bundle_json: str) -> None:
        self.agent_id = agent_id
        self.bundle_json = bundle_json


class ApiProvisioner:
    def __init__(self, settings: ProvisioningSettings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()

    def create_agent(self, *, org_id: str, patient_id: str) -> ProvisionedBundle:
        """A pending agent with its broker account (both or neither), and its bundle."""
        enrollment = new_enrollment(self.settings, org_id=org_id, patient_id=patient_id, now=self.clock.now())
        created = agents.create_agent(self.settings, enrollment, clock=self.clock)
        return ProvisionedBundle(created.agent_id, created.bundle_json)

    def revoke_agent(self, agent_id: str, *, org_id: str) -> str:
        return agents.revoke_agent(self.settings, agent_id, org_id=org_id, clock=self.clock)


def provisioner(config_file: Path | None) -> ApiProvisioner:
    """The entry point's factory: settings from ``config_file`` (or VIGIL_CONFIG) and the environment."""
    return ApiProvisioner(load_settings(ProvisioningSettings, config_file=config_file))
