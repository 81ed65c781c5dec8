-- Dead letters cannot fill the disk (issue 10 item 7).
--
-- An enrolled agent may publish anything under its own up/ subtree, and every message ingest
-- cannot accept becomes a dead letter. Ingest now keeps only a bounded prefix of each payload
-- (setting dead_letter_payload_max_bytes) together with the length and SHA-256 of the whole
-- payload as it arrived, so an operator can still match a dead letter against a captured message.
ALTER TABLE dead_letters ADD COLUMN payload_bytes integer, ADD COLUMN payload_sha256 bytea;
UPDATE dead_letters SET payload_bytes = octet_length(payload), payload_sha256 = sha256(payload);
ALTER TABLE dead_letters
    ALTER COLUMN payload_bytes SET NOT NULL,
    ALTER COLUMN payload_sha256 SET NOT NULL,
    ADD CONSTRAINT dead_letters_payload_prefix CHECK (octet_length(payload) <= payload_bytes),
    ADD CONSTRAINT dead_letters_payload_sha256 CHECK (octet_length(payload_sha256) = 32);

-- Dead letters over an agent's rate (settings dead_letter_burst, dead_letter_per_minute) are
-- acknowledged and counted here, one row per agent and hour, without their payloads.
-- agent_id is '' when the publisher could not be told from the topic.
CREATE TABLE dead_letter_suppressed (
    agent_id       text NOT NULL,
    hour           timestamptz NOT NULL,
    org_id         text,
    messages       bigint NOT NULL CHECK (messages > 0),
    payload_bytes  bigint NOT NULL CHECK (payload_bytes >= 0),
    last_reason    text NOT NULL,
    PRIMARY KEY (agent_id, hour)
);
CREATE INDEX dead_letter_suppressed_hour ON dead_letter_suppressed (hour);
