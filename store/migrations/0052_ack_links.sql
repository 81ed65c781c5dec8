-- Acknowledgement links (issue 13): a notification about an alert to a care-team member carries a
-- link that acknowledges the alert after sign-in. The link is an HMAC-signed token (see
-- consult/notify/links.py) naming this row, the alert, the recipient and the expiry; the row makes
-- it single-use. The token itself is never stored: a copy of the database acknowledges nothing.
CREATE TABLE ack_links (
    link_id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    outbox_id          bigint NOT NULL UNIQUE REFERENCES notification_outbox ON DELETE CASCADE,
    org_id             text NOT NULL,
    -- No foreign key to alerts: the worker writes this row and must not wait for the alert engine's
    -- row lock (the outbox row, deleted with its alert, takes this one with it).
    alert_id           bigint NOT NULL,
    recipient_user_id  uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at         timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    used_at            timestamptz,
    -- acknowledged: this link acknowledged the alert; stale: the alert was no longer open.
    outcome            text CHECK (outcome IN ('acknowledged', 'stale')),
    CHECK (expires_at > created_at),
    CHECK ((used_at IS NULL) = (outcome IS NULL))
);
CREATE INDEX ack_links_alert ON ack_links (alert_id);
