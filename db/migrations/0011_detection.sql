-- Workflow 3, proactive detection: alerts as incidents with a lifecycle, metric thresholds, and
-- past cases imported as cases.

-- Alert kinds as `cx detect run` names them. An alert that several signals correlate into is an
-- 'incident'. The urgent alert of a critical case is the 'critical_case' kind.
ALTER TABLE proactive_alerts DROP CONSTRAINT proactive_alerts_alert_type_check;
UPDATE proactive_alerts SET alert_type = CASE alert_type
    WHEN 'health_metric' THEN 'metric' WHEN 'volume_spike' THEN 'volume' WHEN 'urgent_case' THEN 'critical_case'
    ELSE alert_type END;
UPDATE proactive_alerts SET fingerprint = 'critical_case:' || substr(fingerprint, length('urgent_case:') + 1)
WHERE fingerprint LIKE 'urgent\_case:%';
ALTER TABLE proactive_alerts ADD CONSTRAINT proactive_alerts_alert_type_check
    CHECK (alert_type IN ('metric', 'volume', 'cluster', 'error_code', 'critical_case', 'incident', 'budget'));

ALTER TABLE proactive_alerts DROP CONSTRAINT proactive_alerts_severity_check;
ALTER TABLE proactive_alerts ADD CONSTRAINT proactive_alerts_severity_check
    CHECK (severity IN ('critical', 'high', 'warning', 'medium', 'low'));

ALTER TABLE proactive_alerts
    -- What fired, for listing and filtering; NULL where it does not apply.
    ADD COLUMN category       text,
    ADD COLUMN subcategory    text,
    ADD COLUMN metric_name    text,
    ADD COLUMN error_code     text,
    -- Bumped by every change Slack should show; the post job edits the message until
    -- posted_revision catches up, so a retried or duplicated post job changes nothing twice.
    ADD COLUMN revision        integer NOT NULL DEFAULT 1 CHECK (revision >= 1),
    ADD COLUMN posted_revision integer NOT NULL DEFAULT 0 CHECK (posted_revision >= 0),
    ADD COLUMN reminded_at     timestamptz,
    ADD COLUMN summary_source  text NOT NULL DEFAULT 'template' CHECK (summary_source IN ('template', 'claude'));

CREATE INDEX proactive_alerts_unposted_idx ON proactive_alerts (alert_id) WHERE posted_revision < revision;

-- Evidence that is a case names it, so an alert's cases are one join away and go with the case.
ALTER TABLE alert_evidence ADD COLUMN case_id uuid REFERENCES cases ON DELETE CASCADE;
CREATE INDEX alert_evidence_case_idx ON alert_evidence (case_id) WHERE case_id IS NOT NULL;
UPDATE alert_evidence SET case_id = (details->>'case_id')::uuid WHERE details ? 'case_id';

-- Thresholds per metric name: from the YAML defaults, or from the points pushed to the webhook.
CREATE TABLE metric_thresholds (
    metric_name        text PRIMARY KEY,
    threshold_warning  double precision,
    threshold_critical double precision,
    source             text NOT NULL CHECK (source IN ('defaults', 'pushed')),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE health_metrics ADD COLUMN service text;

-- Error-code counts over the 30-day baseline read the codes triage (or the import) stored.
CREATE INDEX cases_error_codes_idx ON cases USING gin (error_codes) WHERE error_codes <> '{}';

-- Detection compares a window's case vectors in memory; nothing searches case_embeddings by
-- nearest neighbour, and an HNSW insert per imported case would make a 100k-case import take hours.
DROP INDEX case_embeddings_embedding_384_idx;
DROP INDEX case_embeddings_embedding_1536_idx;

-- Past cases arrive with their history: an imported case may start resolved or closed.
CREATE OR REPLACE FUNCTION enforce_case_initial_status() RETURNS trigger AS $$
BEGIN
    IF NEW.status <> 'new' AND NEW.channel <> 'import' THEN
        RAISE EXCEPTION 'a case starts as new, not %', NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'case_status_transition';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
