"""Video consultations: rooms, join links, the waiting room and signalling, TURN credentials.

- :mod:`consult.video.links`      signed, expiring join tokens bound to one room and one participant
- :mod:`consult.video.rooms`      rooms and participants in the database; a verified link -> a grant
- :mod:`consult.video.protocol`   the signalling messages (version 1) and their validation
- :mod:`consult.video.signalling` the pure state machine of one room (waiting room, relay, reconnect)
- :mod:`consult.video.hub`        the asyncio shell any transport (the app's WebSocket) plugs into
- :mod:`consult.video.turn`       ICE servers and coturn TURN REST credentials
- :mod:`consult.video.settings`   the ``video_*`` settings

Media never passes through the server: peers connect to each other (DTLS-SRTP), through a TURN relay
when a NAT requires one. docs/video.md describes the design.
"""
