-- TimescaleDB path: readings become a hypertable (1-day chunks), compressed after 7 days with
-- segments per (patient, metric) so a cold chart decompresses only that patient's segment, raw rows
-- retained for 7 years (medical-record retention), and hourly + daily continuous aggregates.
SELECT create_hypertable('readings', by_range('time', INTERVAL '1 day'), migrate_data => true);

ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'patient_id, metric',
    timescaledb.compress_orderby = 'time DESC'
);
SELECT add_compression_policy('readings', INTERVAL '7 days');
SELECT add_retention_policy('readings', INTERVAL '7 years');

CREATE MATERIALIZED VIEW readings_hourly WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, org_id, patient_id, metric,
       min(value) AS min_value, max(value) AS max_value, sum(value) AS sum_value, count(*) AS n
FROM readings
GROUP BY 1, 2, 3, 4
WITH NO DATA;
-- Wide refresh windows: glucose meters and cuffs upload weeks of stored records late. A refresh
-- only recomputes buckets invalidated by new rows, so an untouched window costs little.
SELECT add_continuous_aggregate_policy('readings_hourly',
    start_offset => INTERVAL '90 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes');

CREATE MATERIALIZED VIEW readings_daily WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', time) AS bucket, org_id, patient_id, metric,
       min(value) AS min_value, max(value) AS max_value, sum(value) AS sum_value, count(*) AS n
FROM readings
GROUP BY 1, 2, 3, 4
WITH NO DATA;
SELECT add_continuous_aggregate_policy('readings_daily',
    start_offset => INTERVAL '400 days', end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '6 hours');
