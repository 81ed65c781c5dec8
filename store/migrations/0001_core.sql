-- Organisations, patients, agents and their assignment history, devices, dead letters.
-- Every table holding PHI carries org_id; composite foreign keys keep rows inside one organisation.

CREATE TABLE organizations (
    org_id      text PRIMARY KEY CHECK (org_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE patients (
    patient_id    text PRIMARY KEY CHECK (patient_id ~ '^[A-Za-z0-9][A-Za-z0-9:_.-]{0,127}$'),
    org_id        text NOT NULL REFERENCES organizations,
    display_name  text NOT NULL,
    mrn           text,
    birth_date    date,
    -- Clinical settings (SpO2 scale, threshold overrides, goals); read by the alert rules.
    settings      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, patient_id)
);

CREATE TABLE agents (
    agent_id        text PRIMARY KEY CHECK (agent_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    org_id          text NOT NULL REFERENCES organizations,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active', 'revoked')),
    -- Raw Ed25519 (signing) and X25519 (key agreement) public keys, registered from the agent.
    sign_public_key bytea CHECK (octet_length(sign_public_key) = 32),
    sign_kid        text UNIQUE,
    kex_public_key  bytea CHECK (octet_length(kex_public_key) = 32),
    kex_kid         text,
    agent_version   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    activated_at    timestamptz,
    revoked_at      timestamptz,
    last_seen_at    timestamptz,
    UNIQUE (org_id, agent_id),
    CHECK ((status = 'active') <= (sign_public_key IS NOT NULL AND kex_public_key IS NOT NULL))
);

-- Which patient an agent measures, over time. Re-assignment closes the open row: history stays.
CREATE TABLE agent_assignments (
    agent_id    text NOT NULL,
    org_id      text NOT NULL,
    patient_id  text NOT NULL,
    valid_from  timestamptz NOT NULL DEFAULT now(),
    valid_to    timestamptz,
    FOREIGN KEY (org_id, agent_id) REFERENCES agents (org_id, agent_id),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id),
    CHECK (valid_to IS NULL OR valid_to > valid_from),
    PRIMARY KEY (agent_id, valid_from)
);
CREATE UNIQUE INDEX agent_assignments_open ON agent_assignments (agent_id) WHERE valid_to IS NULL;
CREATE INDEX agent_assignments_patient ON agent_assignments (patient_id);

CREATE TABLE devices (
    device_id     text PRIMARY KEY CHECK (device_id ~ '^[A-Za-z0-9][A-Za-z0-9:_.-]{0,127}$'),
    org_id        text NOT NULL,
    agent_id      text NOT NULL,
    profile       text,
    name          text,
    manufacturer  text,
    model         text,
    serial        text,
    firmware      text,
    battery_pct   smallint CHECK (battery_pct BETWEEN 0 AND 100),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz,
    FOREIGN KEY (org_id, agent_id) REFERENCES agents (org_id, agent_id)
);
CREATE INDEX devices_agent ON devices (agent_id);

-- Envelopes that will never become valid. The payload is kept as received (still sealed).
CREATE TABLE dead_letters (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    org_id       text,
    agent_id     text,
    topic        text NOT NULL,
    reason       text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    payload      bytea NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at);
