-- The chart and "latest value" queries filter on org_id as well (tenant isolation), and 0002's
-- covering index did not hold it: every matching row cost a heap visit, one page per reading on a
-- 30-day chart because arrival order interleaves patients (bench/store_queries.py measured 499 heap
-- pages for 499 readings on 10M rows). With org_id in the INCLUDE list both queries are
-- index-only scans once the visibility map is set (autovacuum), whatever the arrival order.
DROP INDEX readings_patient_metric_time;
CREATE INDEX readings_patient_metric_time ON readings (patient_id, metric, time DESC) INCLUDE (value, org_id);
