"""consult package: care-team communication.

- :mod:`consult.requests`    video consultation requests (the escalation walk's last step)
- :mod:`consult.scheduling`  clinicians' availability, booking, start now, cancel
- :mod:`consult.video`       rooms, join links, the waiting room and signalling, TURN credentials
"""
