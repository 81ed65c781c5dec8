"""Secure messaging: threads about one patient between the patient and their care team, or among
the care team about one alert; messages kept as versions; attachments sealed at rest.

- :mod:`consult.messaging.threads`      opening threads, participants, posting, editing, deleting,
                                        read state, and the PHI-free notification of a new message
- :mod:`consult.messaging.attachments`  what may be attached (type by content, size) and sealing
- :mod:`consult.messaging.errors`       the refusals, each with a stable code

No web code here: ``clinician_api.routes.messages`` authorises and audits each call, then calls in.
"""
