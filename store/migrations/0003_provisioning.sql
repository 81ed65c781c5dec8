-- Provisioning (`vigil agents create`): the agent's broker credentials and its one-time enrollment
-- token. Only hashes are stored: the Mosquitto $7$ hash of the MQTT password (so the broker's
-- password file can be rendered again from this table at any time) and the SHA-256 of the token,
-- cleared when the agent registers (the token is single use).
ALTER TABLE agents
    ADD COLUMN mqtt_password_hash text,
    ADD COLUMN enrollment_token_sha256 bytea CHECK (octet_length(enrollment_token_sha256) = 32),
    ADD COLUMN enrollment_expires_at timestamptz;
