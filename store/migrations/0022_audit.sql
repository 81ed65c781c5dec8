-- The audit log (HIPAA 164.312(b) audit controls, (c) integrity): one row per access to PHI, read
-- or write, denials included, and the security events around them (sign-in, break-glass).
--
-- Append-only: vigil_app (the API's role) has no UPDATE, DELETE or TRUNCATE on it, and a trigger
-- refuses UPDATE, DELETE and TRUNCATE for every role, the owner included. A superuser can still
-- disable the trigger; the hash chain is what makes that visible:
--
--   hash = sha256(prev_hash || audit_payload(row))     prev_hash of the first row: 32 zero bytes
--
-- The BEFORE INSERT trigger assigns seq (the position in the chain), prev_hash and hash under a
-- transaction-scoped advisory lock, so concurrent writers are serialised and the chain never
-- forks (seq is the primary key: a fork would be a duplicate key, never a silent branch). Insert
-- one row per statement. store/audit.py recomputes the same payload in Python (`vigil audit
-- verify`); docs/api.md gives the byte layout.

-- A length-prefixed field: 4-byte big-endian UTF-8 length, then the bytes; NULL is ff ff ff ff.
CREATE FUNCTION audit_frame(value text) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN value IS NULL THEN '\xffffffff'::bytea
                ELSE int4send(octet_length(convert_to(value, 'UTF8'))) || convert_to(value, 'UTF8') END
$$;

CREATE TABLE audit_log (
    seq          bigint PRIMARY KEY,
    at           timestamptz NOT NULL,
    org_id       text,
    actor_id     uuid,
    actor_role   text,
    patient_id   text,
    -- Patients whose data a list response showed (a panel page); patient_id is the single subject.
    subjects     text[] NOT NULL DEFAULT '{}',
    action       text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.]{0,62}$'),
    object_type  text NOT NULL CHECK (object_type ~ '^[a-z][a-z0-9_]{0,62}$'),
    object_id    text CHECK (length(object_id) <= 200),
    outcome      text NOT NULL CHECK (outcome IN ('success', 'denied', 'failed')),
    -- Why the caller could see it: 'panel', 'self', 'break_glass', 'org' (admin roster), NULL.
    basis        text,
    reason       text CHECK (length(reason) <= 1000),
    client_addr  text CHECK (length(client_addr) <= 64),
    request_id   text CHECK (length(request_id) <= 64),
    prev_hash    bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash         bytea NOT NULL CHECK (octet_length(hash) = 32)
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, at) WHERE patient_id IS NOT NULL;
CREATE INDEX audit_log_subjects ON audit_log USING gin (subjects);
CREATE INDEX audit_log_org_at ON audit_log (org_id, at);
CREATE INDEX audit_log_actor_at ON audit_log (actor_id, at);

CREATE FUNCTION audit_payload(r audit_log) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT audit_frame('1')
        || audit_frame(r.seq::text)
        || audit_frame((extract(epoch FROM r.at) * 1000000)::bigint::text)
        || audit_frame(r.org_id)
        || audit_frame(r.actor_id::text)
        || audit_frame(r.actor_role)
        || audit_frame(r.patient_id)
        || audit_frame(cardinality(r.subjects)::text)
        || coalesce((SELECT string_agg(audit_frame(s), ''::bytea ORDER BY n)
                     FROM unnest(r.subjects) WITH ORDINALITY AS u(s, n)), ''::bytea)
        || audit_frame(r.action)
        || audit_frame(r.object_type)
        || audit_frame(r.object_id)
        || audit_frame(r.outcome)
        || audit_frame(r.basis)
        || audit_frame(r.reason)
        || audit_frame(r.client_addr)
        || audit_frame(r.request_id)
$$;

CREATE FUNCTION audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_seq  bigint;
    last_hash bytea;
BEGIN
    -- Held to the end of the transaction: the next writer reads this row's hash once we commit.
    PERFORM pg_advisory_xact_lock(1635083369, 0);  -- 'audi'
    SELECT seq, hash INTO last_seq, last_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.prev_hash := coalesce(last_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
    NEW.hash := sha256(NEW.prev_hash || audit_payload(NEW));
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_chain();

CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();

REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM vigil_app, PUBLIC;
