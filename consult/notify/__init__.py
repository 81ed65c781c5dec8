"""Notification delivery: the outbox worker (``vigil notify run``), its channels (SMTP with
STARTTLS, SMS and push through a signed-webhook gateway, in-app), the escalation sink that turns
an alert's escalation steps into notifications, and signed acknowledgement links.

Layout: ``errors`` (the exception tree), ``links`` (ack-link tokens), ``templates`` (what each
kind says on each channel, with no PHI beyond the channel's policy), ``policy`` (quiet hours and
the send/defer/cancel decision), ``channels`` (the interface), ``smtp``, ``webhook``, ``sink``,
``worker``, ``timeline`` (an alert's delivery steps), ``settings`` and ``cli``.
"""
