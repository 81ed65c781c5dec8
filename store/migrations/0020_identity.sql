-- Identity for the clinician API: the application's database role, users, sessions, bearer tokens,
-- sign-in throttling, password resets and the notification outbox.
--
-- vigil_app is the role the API runs as (it SETs ROLE to it on every pooled connection). It gets
-- read and write access to the tables by default privileges, and loses UPDATE and DELETE on the
-- audit log (0022). Creating it needs CREATEROLE; roles are cluster-wide, so it may already exist.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vigil_app') THEN
        BEGIN
            CREATE ROLE vigil_app NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database of this cluster created it at the same moment
        END;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO vigil_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO vigil_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO vigil_app;
-- Tables and sequences created later by the role that migrates get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO vigil_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO vigil_app;

-- One account per person (HIPAA 164.312(a)(2)(i)), or per integration (role 'service': bearer
-- tokens only, no password). A patient account is bound to its patient record.
CREATE TABLE users (
    user_id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id               text NOT NULL REFERENCES organizations,
    email                text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    display_name         text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    role                 text NOT NULL CHECK (role IN ('admin', 'clinician', 'nurse', 'care_coordinator', 'patient', 'service')),
    patient_id           text,
    status               text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    -- argon2id PHC string; NULL for service accounts and for users who have not set one yet.
    password_hash        text,
    password_changed_at  timestamptz,
    -- TOTP (RFC 6238) secret sealed with the API's secret key (AES-GCM); pending until confirmed.
    totp_secret_sealed   bytea,
    totp_pending_sealed  bytea,
    totp_enabled_at      timestamptz,
    -- Last accepted time step: a code is never accepted twice (replay).
    totp_last_step       bigint,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    UNIQUE (org_id, user_id),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id),
    CHECK ((role = 'patient') = (patient_id IS NOT NULL)),
    CHECK (role <> 'service' OR password_hash IS NULL)
);
CREATE UNIQUE INDEX users_email ON users (email);
CREATE INDEX users_org_role ON users (org_id, role);

-- Server-side sessions. The cookie carries a random secret; only its SHA-256 is stored.
CREATE TABLE sessions (
    session_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    secret_sha256    bytea NOT NULL UNIQUE CHECK (octet_length(secret_sha256) = 32),
    user_id          uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    org_id           text NOT NULL,
    created_at       timestamptz NOT NULL,
    last_seen_at     timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    -- When the second factor was verified in this session (NULL: password only).
    mfa_at           timestamptz,
    revoked_at       timestamptz,
    revoked_reason   text CHECK (revoked_reason IN ('logout', 'admin', 'password_changed', 'user', 'totp_reset')),
    client_addr      text,
    user_agent       text CHECK (length(user_agent) <= 300),
    CHECK (expires_at > created_at)
);
CREATE INDEX sessions_user ON sessions (user_id, created_at DESC);

-- Bearer tokens for integrations: random, only the SHA-256 stored, scoped, expiring, revocable.
CREATE TABLE api_tokens (
    token_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    secret_sha256   bytea NOT NULL UNIQUE CHECK (octet_length(secret_sha256) = 32),
    user_id         uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    org_id          text NOT NULL,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    scopes          text[] NOT NULL,
    created_by      uuid REFERENCES users,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    last_used_at    timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Sign-in throttling: failure counters per key ('account:<id>', 'address:<ip>',
-- 'account_address:<id>|<ip>'), counted over a window; locked_until bounds every lockout in time.
CREATE TABLE login_throttle (
    key             text PRIMARY KEY CHECK (length(key) <= 400),
    window_start    timestamptz NOT NULL,
    failures        integer NOT NULL CHECK (failures >= 0),
    locked_until    timestamptz
);

-- Password reset by an emailed one-time link: the token's SHA-256, single use, expiring.
CREATE TABLE password_resets (
    reset_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    secret_sha256   bytea NOT NULL UNIQUE CHECK (octet_length(secret_sha256) = 32),
    user_id         uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX password_resets_user ON password_resets (user_id, created_at DESC);

-- Notifications waiting for delivery (the delivery worker of the communication work sends them).
-- params: what the template needs, never PHI. secret_params: what must not outlive delivery (a
-- one-time link); the worker erases it when the row leaves 'pending'/'sending' (the CHECK says so).
-- not_after: past it the notification is pointless (the link expired) and is not sent.
CREATE TABLE notification_outbox (
    outbox_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id             text NOT NULL REFERENCES organizations,
    channel            text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'in_app')),
    recipient_user_id  uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    kind               text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,62}$'),
    template_version   integer NOT NULL DEFAULT 1 CHECK (template_version > 0),
    params             jsonb NOT NULL DEFAULT '{}'::jsonb,
    secret_params      jsonb,
    idempotency_key    text NOT NULL UNIQUE CHECK (length(idempotency_key) <= 200),
    state              text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'canceled')),
    attempts           integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at    timestamptz NOT NULL,
    not_after          timestamptz,
    created_at         timestamptz NOT NULL,
    sent_at            timestamptz,
    last_error         text,
    CHECK (state IN ('pending', 'sending') OR secret_params IS NULL),
    CHECK ((state = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notification_outbox_recipient ON notification_outbox (recipient_user_id, created_at DESC);
