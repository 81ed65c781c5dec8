-- Enrolment over HTTP: an admin creates a one-time token bound to an organisation and a patient;
-- `vigil edge enroll --url --token` exchanges it once, before it expires, for an enrollment bundle
-- (the agent is created then). Only the token's SHA-256 is kept.
CREATE TABLE enrolment_tokens (
    token_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    secret_sha256  bytea NOT NULL UNIQUE CHECK (octet_length(secret_sha256) = 32),
    org_id         text NOT NULL,
    patient_id     text NOT NULL,
    created_by     uuid NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    used_from      text CHECK (length(used_from) <= 64),
    agent_id       text,
    revoked_at     timestamptz,
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id),
    FOREIGN KEY (org_id, created_by) REFERENCES users (org_id, user_id),
    CHECK (expires_at > created_at),
    CHECK ((used_at IS NULL) = (agent_id IS NULL))
);
CREATE INDEX enrolment_tokens_org ON enrolment_tokens (org_id, created_at DESC);

-- The latest status each agent reported (.../up/status, opened by ingest): the fleet page's outbox
-- depth, agent version and alarms. Newer reports replace older ones (by the agent's sent_at).
CREATE TABLE agent_status (
    agent_id       text PRIMARY KEY,
    org_id         text NOT NULL,
    sent_at        timestamptz NOT NULL,
    received_at    timestamptz NOT NULL,
    online         boolean NOT NULL,
    agent_version  text CHECK (length(agent_version) <= 128),
    outbox_depth   integer NOT NULL CHECK (outbox_depth >= 0),
    outbox_oldest  timestamptz,
    last_receipt   bigint NOT NULL DEFAULT 0,
    alarms         text[] NOT NULL DEFAULT '{}',
    FOREIGN KEY (org_id, agent_id) REFERENCES agents (org_id, agent_id)
);
