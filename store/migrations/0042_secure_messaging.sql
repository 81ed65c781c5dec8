-- Secure messaging (issue 13): threads about one patient, their participants with read state,
-- messages kept as versions (an edit is a new version, a deletion a tombstone version: a medical
-- record keeps its history), and attachments stored encrypted.
--
--   message_threads          kind 'patient' (the patient and their care team) or 'care_team' (staff
--                            only, one per alert)
--   thread_participants      who may read and write a thread; read_seq is the highest message seq
--                            the participant has read (unread = later messages of others)
--   thread_messages          one row per message: its place in the thread (seq), author and time
--   message_versions         the message's text over time; version 1 is the original
--   message_attachments      a file sealed with AES-256-GCM by the API (the database never holds
--                            the plaintext); media type and size are checked here a second time
--
-- thread_messages, message_versions and message_attachments are append-only: a trigger refuses
-- UPDATE and DELETE for every role, so neither an edit nor a deletion can rewrite what was said.
-- Every insert of a message or version and every participant change NOTIFYs vigil_messages with
-- ids only; the API's one listener per process fans it out to the open pages (which then fetch
-- what they may see through the audited routes).

CREATE TABLE message_threads (
    thread_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id           text NOT NULL REFERENCES organizations,
    patient_id       text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('patient', 'care_team')),
    alert_id         bigint REFERENCES alerts,
    subject          text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
    created_at       timestamptz NOT NULL,
    created_by       uuid NOT NULL REFERENCES users,
    last_seq         bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_message_at  timestamptz,
    UNIQUE (org_id, thread_id),
    FOREIGN KEY (org_id, patient_id) REFERENCES patients (org_id, patient_id),
    CHECK (kind = 'care_team' OR alert_id IS NULL)
);
CREATE INDEX message_threads_patient ON message_threads (org_id, patient_id, last_message_at DESC);
CREATE UNIQUE INDEX message_threads_one_per_alert ON message_threads (alert_id) WHERE kind = 'care_team';

CREATE TABLE thread_participants (
    thread_id   uuid NOT NULL,
    org_id      text NOT NULL,
    user_id     uuid NOT NULL,
    added_at    timestamptz NOT NULL,
    added_by    uuid REFERENCES users,
    removed_at  timestamptz,
    read_seq    bigint NOT NULL DEFAULT 0 CHECK (read_seq >= 0),
    read_at     timestamptz,
    PRIMARY KEY (thread_id, user_id),
    FOREIGN KEY (org_id, thread_id) REFERENCES message_threads (org_id, thread_id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, user_id)
);
CREATE INDEX thread_participants_user ON thread_participants (user_id, thread_id) WHERE removed_at IS NULL;

CREATE TABLE message_attachments (
    attachment_id  uuid PRIMARY KEY,
    thread_id      uuid NOT NULL,
    org_id         text NOT NULL,
    uploaded_by    uuid NOT NULL REFERENCES users,
    uploaded_at    timestamptz NOT NULL,
    media_type     text NOT NULL CHECK (media_type IN ('image/jpeg', 'image/png', 'application/pdf')),
    size_bytes     integer NOT NULL CHECK (size_bytes BETWEEN 1 AND 10485760),
    sha256         bytea NOT NULL CHECK (octet_length(sha256) = 32),
    -- Which key sealed it (a fingerprint, not the key): a changed API secret is told apart from tampering.
    key_id         text NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
    sealed         bytea NOT NULL CHECK (octet_length(sealed) = size_bytes + 28),
    FOREIGN KEY (org_id, thread_id) REFERENCES message_threads (org_id, thread_id)
);
CREATE INDEX message_attachments_thread ON message_attachments (thread_id);

CREATE TABLE thread_messages (
    message_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id   uuid NOT NULL,
    org_id      text NOT NULL,
    seq         bigint NOT NULL CHECK (seq > 0),
    author_id   uuid NOT NULL REFERENCES users,
    created_at  timestamptz NOT NULL,
    UNIQUE (thread_id, seq),
    FOREIGN KEY (org_id, thread_id) REFERENCES message_threads (org_id, thread_id)
);

CREATE TABLE message_versions (
    message_id     uuid NOT NULL REFERENCES thread_messages,
    version        integer NOT NULL CHECK (version >= 1),
    body           text CHECK (char_length(body) BETWEEN 1 AND 10000),
    attachment_id  uuid REFERENCES message_attachments,
    deleted        boolean NOT NULL DEFAULT false,
    at             timestamptz NOT NULL,
    by_user        uuid NOT NULL REFERENCES users,
    PRIMARY KEY (message_id, version),
    -- A tombstone says nothing; any other version says something.
    CHECK (CASE WHEN deleted THEN body IS NULL AND attachment_id IS NULL
                ELSE body IS NOT NULL OR attachment_id IS NOT NULL END)
);

CREATE FUNCTION messaging_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER thread_messages_append_only BEFORE UPDATE OR DELETE ON thread_messages
    FOR EACH ROW EXECUTE FUNCTION messaging_refuse();
CREATE TRIGGER message_versions_append_only BEFORE UPDATE OR DELETE ON message_versions
    FOR EACH ROW EXECUTE FUNCTION messaging_refuse();
CREATE TRIGGER message_attachments_append_only BEFORE UPDATE OR DELETE ON message_attachments
    FOR EACH ROW EXECUTE FUNCTION messaging_refuse();
REVOKE UPDATE, DELETE, TRUNCATE ON thread_messages, message_versions, message_attachments FROM vigil_app, PUBLIC;

-- Live delivery: ids only. 'm': a message version (1 = new message); 'p': a participant added or removed.
CREATE FUNCTION message_version_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    m thread_messages%ROWTYPE;
BEGIN
    SELECT * INTO m FROM thread_messages WHERE message_id = NEW.message_id;
    PERFORM pg_notify('vigil_messages', json_build_object(
        'v', 1, 'k', 'm', 'org_id', m.org_id, 'thread_id', m.thread_id, 'message_id', m.message_id,
        'seq', m.seq, 'version', NEW.version, 'author_id', m.author_id, 'deleted', NEW.deleted)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER message_versions_notify AFTER INSERT ON message_versions
    FOR EACH ROW EXECUTE FUNCTION message_version_notify();

CREATE FUNCTION thread_participant_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.removed_at IS NOT DISTINCT FROM OLD.removed_at THEN
        RETURN NULL;  -- a read-state change: nobody else needs to know
    END IF;
    PERFORM pg_notify('vigil_messages', json_build_object(
        'v', 1, 'k', 'p', 'org_id', NEW.org_id, 'thread_id', NEW.thread_id, 'user_id', NEW.user_id,
        'active', NEW.removed_at IS NULL)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER thread_participants_notify AFTER INSERT OR UPDATE ON thread_participants
    FOR EACH ROW EXECUTE FUNCTION thread_participant_notify();
