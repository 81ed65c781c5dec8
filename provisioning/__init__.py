"""Server-side fleet and tenant management: what an operator (``vigil agents``, ``vigil broker``) and
the clinician API's fleet routes do to bring an edge agent into service and take it out again.

==========================  ===========================================================================
module                      its one job
==========================  ===========================================================================
``provisioning.settings``   ``ProvisioningSettings``: built once by the caller, passed to every function
``provisioning.errors``     the exception tree; foreign errors translated at this package's boundary
``provisioning.tenants``    organisations and patients (create)
``provisioning.keys``       server key generations (init, rotate, retire, list) and the Vigil CA
``provisioning.bundles``    enrollment bundles and the one-time token: the bundle plus what is stored
``provisioning.agents``     agents: create, assign, revoke, list with status
``provisioning.broker``     broker accounts in step with the database (commit with the broker, sync),
                            and rendering the broker's configuration
==========================  ===========================================================================

Typical use (the CLI and the clinician API do exactly this)::

    enrollment = new_enrollment(settings, org_id="clinic-1", patient_id="p-123", now=clock.now())
    created = create_agent(settings, enrollment, clock=clock)   # row + broker account, or neither
    created.bundle                                              # a secret: hand it over, never log it
    revoke_agent(settings, created.agent_id, clock=clock)

Imports ``rpm_core``, ``store`` and ``broker_config`` only (an import-linter contract); only
``vigil_cli`` and ``clinician_api`` import it. It never prints, never speaks SQL (``store`` does)
and never creates settings itself. See docs/provisioning.md.
"""

__all__: list[str] = []
