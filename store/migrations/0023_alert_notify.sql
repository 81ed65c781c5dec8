-- Live updates of the alert queue: every alert event (opened, severity raised, acknowledged,
-- escalation step, resolved, ...) NOTIFYs channel vigil_alerts when its transaction commits. The
-- payload carries ids and codes only (never values or names): the API's one listener per process
-- fans it out to the open queues, which fetch what they may see through the API.
CREATE FUNCTION alert_event_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    a alerts%ROWTYPE;
BEGIN
    SELECT * INTO a FROM alerts WHERE alert_id = NEW.alert_id;
    PERFORM pg_notify('vigil_alerts', json_build_object(
        'v', 1, 'alert_id', NEW.alert_id, 'org_id', NEW.org_id, 'patient_id', a.patient_id,
        'event', NEW.type, 'severity', a.severity, 'state', a.state)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER alert_events_notify AFTER INSERT ON alert_events FOR EACH ROW EXECUTE FUNCTION alert_event_notify();
