-- The horizon of this database: every transaction of this database with an id below it has
-- finished. The readings feed (store.feed), the panel summaries (store.summaries), the audit
-- sealer (store.audit) and the readings channel's hint (store.channels) read rows "committed
-- below the horizon" and never look below their watermark again.
--
-- pg_snapshot_xmin(pg_current_snapshot()) is the oldest running transaction of the whole
-- cluster: a long write transaction in another database of the same server (a bulk load, a
-- nightly job) held the alert engine, the panel summaries and the audit chain back for as long
-- as it ran. Transaction ids are cluster-wide, but a transaction of another database can never
-- write here, so this horizon skips the running transactions that are positively another
-- database's: a transaction holds its transaction-id lock from the moment it has an id, and a
-- relation lock on every table it wrote to (taken before the id was assigned) until it ends;
-- locks on tables live in the database of the backend that holds them.
--
-- Every other running transaction counts, conservatively: ours, one that finished between the
-- snapshot and the read of pg_locks, one whose id is assigned but whose lock is not yet visible.
-- The snapshot is taken before pg_locks is read (the statement's snapshot), so a transaction of
-- this database that gets its id later has an id at or above the snapshot's xmax, which bounds
-- the result. The result can move backwards between calls (a transaction seen running, then
-- not identified); every caller only ever moves its watermark forwards.
CREATE FUNCTION vigil_horizon() RETURNS xid8
LANGUAGE sql STABLE PARALLEL RESTRICTED AS $$
    WITH snap AS (SELECT pg_current_snapshot() AS s),
    running AS (SELECT x FROM snap, pg_snapshot_xip(snap.s) AS x),
    elsewhere AS (
        SELECT t.transactionid::text::bigint AS xid32
        FROM pg_locks t
        WHERE t.locktype = 'transactionid'
          AND EXISTS (
              SELECT 1 FROM pg_locks r
              WHERE r.virtualtransaction = t.virtualtransaction
                AND r.locktype = 'relation'
                AND r.database <> 0
                AND r.database <> (SELECT oid FROM pg_database WHERE datname = current_database())
          )
    )
    SELECT least(
        (SELECT pg_snapshot_xmax(s) FROM snap),
        (SELECT min(x) FROM running
          WHERE x::text::bigint % 4294967296 NOT IN (SELECT xid32 FROM elsewhere))
    )
$$;
