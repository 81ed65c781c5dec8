-- Notification delivery (issue 13): the worker `vigil notify run` claims due rows of
-- notification_outbox, sends them and records each attempt.
--
-- States: pending (due at next_attempt_at) -> sending (an attempt holds the row) -> sent (handed to
-- the provider: the SMTP server said 250, the gateway said 2xx) | delivered (the provider confirmed
-- delivery; an in-app notification is delivered when written) | failed (permanently, or out of
-- attempts: last_error says why, as a code) | canceled (pointless now: the alert was acknowledged,
-- the link expired, the recipient was disabled). A transient failure goes back to pending with a
-- later next_attempt_at (exponential backoff).
--
-- While 'sending' the row names its attempt (attempt_id), the worker that owns it (worker_key: the
-- worker holds the advisory lock (NOTIFY_LOCK_CLASS, worker_key) while it lives) and the attempt's
-- phase: 'prepared' (nothing irrevocable sent yet: the SMTP data's final dot, the gateway request)
-- or 'committing' (it may have reached the provider). A row whose worker is gone is recovered: a
-- prepared attempt is retried at once (it cannot have been delivered); a committing one is resent
-- with the same idempotency key (the Message-ID, the gateway's Idempotency-Key) or failed as
-- 'outcome_unknown', per the worker's settings.
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_state_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_state_check
    CHECK (state IN ('pending', 'sending', 'sent', 'delivered', 'failed', 'canceled'));
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_check1;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_sent_at
    CHECK ((state IN ('sent', 'delivered')) = (sent_at IS NOT NULL));

ALTER TABLE notification_outbox
    -- What the notification is about (the alert timeline shows its delivery), when anything.
    ADD COLUMN alert_id      bigint REFERENCES alerts ON DELETE CASCADE,
    ADD COLUMN action_id     bigint REFERENCES alert_actions ON DELETE CASCADE,
    -- Critical: quiet hours do not hold it back.
    ADD COLUMN urgent        boolean NOT NULL DEFAULT false,
    ADD COLUMN attempt_id    uuid,
    ADD COLUMN worker_key    integer,
    ADD COLUMN lease_until   timestamptz,
    ADD COLUMN send_phase    text CHECK (send_phase IN ('prepared', 'committing')),
    -- The provider's id for the message (SMTP: the Message-ID; a gateway's own id).
    ADD COLUMN provider_ref  text CHECK (length(provider_ref) <= 300),
    ADD COLUMN delivered_at  timestamptz,
    ADD COLUMN failed_at     timestamptz,
    ADD COLUMN canceled_at   timestamptz,
    -- Why next_attempt_at was moved without an attempt ('quiet_hours').
    ADD COLUMN deferred      text CHECK (deferred IN ('quiet_hours')),
    -- In-app: when the recipient opened it.
    ADD COLUMN read_at       timestamptz,
    ADD CONSTRAINT notification_outbox_attempt CHECK (
        (state = 'sending') = (attempt_id IS NOT NULL AND worker_key IS NOT NULL AND lease_until IS NOT NULL
                               AND send_phase IS NOT NULL)),
    ADD CONSTRAINT notification_outbox_last_error CHECK (length(last_error) <= 200);

CREATE INDEX notification_outbox_sending ON notification_outbox (lease_until) WHERE state = 'sending';
CREATE INDEX notification_outbox_alert ON notification_outbox (alert_id, outbox_id) WHERE alert_id IS NOT NULL;
CREATE INDEX notification_outbox_inbox ON notification_outbox (recipient_user_id, outbox_id DESC) WHERE channel = 'in_app';

-- Every attempt to send a notification: who tried, when, how it ended and when the next one is due.
CREATE TABLE notification_attempts (
    attempt_id       uuid PRIMARY KEY,
    outbox_id        bigint NOT NULL REFERENCES notification_outbox ON DELETE CASCADE,
    attempt_no       integer NOT NULL CHECK (attempt_no > 0),
    worker_key       integer NOT NULL,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    -- sent/delivered/failed: final; retry: a transient error (next_attempt_at says when);
    -- interrupted: its worker died before anything irrevocable; unknown: its worker died after.
    outcome          text CHECK (outcome IN ('sent', 'delivered', 'retry', 'failed', 'interrupted', 'unknown')),
    error            text CHECK (length(error) <= 200),
    next_attempt_at  timestamptz,
    CHECK ((outcome IS NULL) = (finished_at IS NULL))
);
CREATE INDEX notification_attempts_outbox ON notification_attempts (outbox_id, started_at);

-- Wake the workers when notifications are queued (they also poll).
CREATE FUNCTION notification_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vigil_notify', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER notification_outbox_queued AFTER INSERT ON notification_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notification_outbox_notify();
