-- Unconfirmed alerts and re-measure requests (issue 14).
--
-- An alert opened on readings not confirmed yet (one reading where its rule asks for two, a NEWS2
-- aggregate from single readings) is marked unconfirmed: its escalation walk is the policy's
-- "unconfirmed" steps (ask the patient to repeat the measurements, action 'request_remeasure')
-- until a repeat confirms it (event 'confirmed': the severity's walk starts) or refutes it
-- (auto-resolved). A threshold alert open for weeks at one severity gets the event
-- 'baseline_suggested': the engine proposes the patient's own baseline to the clinicians.
ALTER TABLE alerts ADD COLUMN unconfirmed boolean NOT NULL DEFAULT false;

ALTER TABLE alert_events DROP CONSTRAINT alert_events_type_check;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_type_check CHECK (type IN (
    'opened', 'retriggered', 'severity_raised', 'reopened', 'cleared', 'acknowledged',
    'resolved', 'auto_resolved', 'assigned', 'snoozed', 'unsnoozed', 'escalation',
    'confirmed', 'baseline_suggested'));

ALTER TABLE alert_actions DROP CONSTRAINT alert_actions_action_check;
ALTER TABLE alert_actions ADD CONSTRAINT alert_actions_action_check CHECK (action IN (
    'notify_care_team', 'message_patient', 'page_backup', 'request_video_consult', 'request_remeasure'));
