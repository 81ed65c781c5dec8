-- The audit log (HIPAA 164.312(b) audit controls, (c) integrity): one row per access to PHI, read
-- or write, denials included, and the security events around them (sign-in, break-glass).
--
-- Two append-only tables:
--   audit_log    the rows, written in the transaction of the access they record (no lock: many
--                requests commit together);
--   audit_chain  the hash chain over them, appended by one sealer at a time (store/audit.py seal):
--                seq, the audit row, prev_hash, hash = sha256(prev_hash || payload(row, seq)).
-- The sealer chains rows in (xid, audit_id) order and only rows whose transaction id is below its
-- snapshot's xmin: every transaction below it has finished, so a row that commits late can never
-- land behind the chain's end (the readings feed uses the same horizon). store/audit.py documents
-- the payload's byte layout; `vigil audit verify` recomputes every hash.
--
-- vigil_app (the API's role) may only SELECT and INSERT; a trigger refuses UPDATE, DELETE and
-- TRUNCATE on both tables for every role, the owner included, and the chain's foreign key keeps a
-- sealed row from being deleted. A superuser can still disable triggers: the chain makes that visible.

CREATE TABLE audit_log (
    audit_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
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
    request_id   text CHECK (length(request_id) <= 64)
);
CREATE INDEX audit_log_seal_order ON audit_log (xid, audit_id);
CREATE INDEX audit_log_patient ON audit_log (patient_id, at) WHERE patient_id IS NOT NULL;
CREATE INDEX audit_log_subjects ON audit_log USING gin (subjects);
CREATE INDEX audit_log_org_at ON audit_log (org_id, at);
CREATE INDEX audit_log_actor_at ON audit_log (actor_id, at);

CREATE TABLE audit_chain (
    seq        bigint PRIMARY KEY CHECK (seq > 0),
    audit_id   bigint NOT NULL UNIQUE REFERENCES audit_log,
    xid        xid8 NOT NULL,
    prev_hash  bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash       bytea NOT NULL CHECK (octet_length(hash) = 32),
    sealed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();

REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, audit_chain FROM vigil_app, PUBLIC;
