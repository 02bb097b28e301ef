-- Daily metrics (workflow 5): every definition is SQL a Grafana user can read and query.
--
-- A local day is [local midnight, next local midnight) in TIMEZONE. Views cannot take parameters,
-- so the definitions are functions of the day's two instants (metrics_*_between), which the daily
-- job calls with the bounds it computes from TIMEZONE itself; the views call the same functions
-- for every local day in report_settings.timezone, a one-row table the daily job and
-- `cx report daily` keep equal to TIMEZONE. `SELECT * FROM metrics_daily WHERE day = '2026-05-04'`
-- computes that day only: the filter reaches metric_days before the functions run.

CREATE TABLE report_settings (
    id         smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    -- An unknown zone name makes the CHECK raise, so the views never run on a bad one.
    timezone   text NOT NULL DEFAULT 'UTC' CHECK ((TIMESTAMP '2000-01-01' AT TIME ZONE timezone) IS NOT NULL),
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO report_settings DEFAULT VALUES;


-- Every local day from the first case's to today, with the instants it starts and ends at (a day
-- with a daylight-saving change lasts 23 or 25 hours).
CREATE VIEW metric_days AS
SELECT g.d::date AS day,
       g.d AT TIME ZONE s.timezone AS day_start,
       (g.d + interval '1 day') AT TIME ZONE s.timezone AS day_end
FROM report_settings s
CROSS JOIN LATERAL generate_series(
    coalesce((SELECT (min(created_at) AT TIME ZONE s.timezone)::date FROM cases), (now() AT TIME ZONE s.timezone)::date)::timestamp,
    (now() AT TIME ZONE s.timezone)::date::timestamp,
    interval '1 day') AS g(d);


-- Cases. received: created in the day. resolved: resolved_at in the day (a case reopened later has
-- no resolved_at until it is resolved again). self_service_resolved: of those, resolution_type
-- self_service. median_resolution_minutes: median of resolved_at - created_at over the resolved.
-- csat_avg: mean CSAT of the resolved that have one (2 decimals, NULL when none).
-- median_first_response_minutes: median of first_response_at - created_at over the cases whose
-- first reply went out in the day. escalated: cases moved to `escalated` in the day.
CREATE FUNCTION metrics_cases_between(day_start timestamptz, day_end timestamptz)
RETURNS TABLE (received integer, resolved integer, self_service_resolved integer, self_service_rate numeric,
               median_resolution_minutes numeric, csat_avg numeric, csat_count integer, first_responses integer,
               median_first_response_minutes numeric, escalated integer)
LANGUAGE sql STABLE AS $$
SELECT
    (SELECT count(*)::integer FROM cases WHERE created_at >= day_start AND created_at < day_end),
    r.resolved, r.self_service_resolved, round(r.self_service_resolved::numeric / nullif(r.resolved, 0), 4),
    r.median_resolution_minutes, r.csat_avg, r.csat_count, f.first_responses, f.median_first_response_minutes,
    (SELECT count(DISTINCT case_id)::integer FROM case_interactions
     WHERE interaction_type = 'status_change' AND to_status = 'escalated'
       AND created_at >= day_start AND created_at < day_end)
FROM (SELECT count(*)::integer AS resolved,
             count(*) FILTER (WHERE resolution_type = 'self_service')::integer AS self_service_resolved,
             round((percentile_cont(0.5) WITHIN GROUP (
                 ORDER BY extract(epoch FROM resolved_at - created_at)::float8))::numeric / 60, 1)
                 AS median_resolution_minutes,
             round(avg(csat), 2) AS csat_avg,
             count(csat)::integer AS csat_count
      FROM cases WHERE resolved_at >= day_start AND resolved_at < day_end) r,
     (SELECT count(*)::integer AS first_responses,
             round((percentile_cont(0.5) WITHIN GROUP (
                 ORDER BY extract(epoch FROM first_response_at - created_at)::float8))::numeric / 60, 1)
                 AS median_first_response_minutes
      FROM cases WHERE first_response_at >= day_start AND first_response_at < day_end) f
$$;


-- Reviews decided in the day (reviewed_at in the day, outcome approved, edited, rejected or
-- escalated); each rate is its count over all of them. triage_accuracy: of the cases with a
-- review decided in the day, the share whose category or subcategory no reviewer corrected that
-- day. review_sla_breaches: reviews due in the day (due_at, REVIEW_TIMEOUT_HOURS after the card)
-- that were not decided by then.
CREATE FUNCTION metrics_reviews_between(day_start timestamptz, day_end timestamptz)
RETURNS TABLE (reviews integer, approve_count integer, edit_count integer, reject_count integer,
               escalate_count integer, approve_rate numeric, edit_rate numeric, reject_rate numeric,
               reviewed_cases integer, corrected_cases integer, triage_accuracy numeric,
               review_sla_breaches integer)
LANGUAGE sql STABLE AS $$
WITH decided AS (
    SELECT case_id, status FROM review_queue
    WHERE reviewed_at >= day_start AND reviewed_at < day_end
      AND status IN ('approved', 'edited', 'rejected', 'escalated')
), counts AS (
    SELECT count(*)::integer AS n,
           count(*) FILTER (WHERE status = 'approved')::integer AS approved,
           count(*) FILTER (WHERE status = 'edited')::integer AS edited,
           count(*) FILTER (WHERE status = 'rejected')::integer AS rejected,
           count(*) FILTER (WHERE status = 'escalated')::integer AS escalated
    FROM decided
), accuracy AS (
    SELECT count(*)::integer AS reviewed,
           count(*) FILTER (WHERE EXISTS (
               SELECT 1 FROM agent_feedback f
               WHERE f.case_id = r.case_id AND f.feedback_type = 'correction'
                 AND f.field IN ('category', 'subcategory')
                 AND f.created_at >= day_start AND f.created_at < day_end))::integer AS corrected
    FROM (SELECT DISTINCT case_id FROM decided) r
)
SELECT c.n, c.approved, c.edited, c.rejected, c.escalated,
       round(c.approved::numeric / nullif(c.n, 0), 4),
       round(c.edited::numeric / nullif(c.n, 0), 4),
       round(c.rejected::numeric / nullif(c.n, 0), 4),
       a.reviewed, a.corrected,
       round(1 - a.corrected::numeric / nullif(a.reviewed, 0), 4),
       (SELECT count(*)::integer FROM review_queue
        WHERE due_at >= day_start AND due_at < day_end AND (reviewed_at IS NULL OR reviewed_at > due_at))
FROM counts c, accuracy a
$$;


-- KB match rate: of the cases that got an AI draft in the day (Claude or extractive; a reviewer's
-- own text is not a match), the share with at least one such draft citing a knowledge-base article.
CREATE FUNCTION metrics_kb_between(day_start timestamptz, day_end timestamptz)
RETURNS TABLE (drafted_cases integer, kb_matched_cases integer, kb_match_rate numeric)
LANGUAGE sql STABLE AS $$
SELECT count(*)::integer, count(*) FILTER (WHERE cited)::integer,
       round((count(*) FILTER (WHERE cited))::numeric / nullif(count(*), 0), 4)
FROM (SELECT case_id, bool_or(cardinality(cited_article_ids) > 0) AS cited
      FROM case_drafts
      WHERE created_at >= day_start AND created_at < day_end AND drafter <> 'reviewer'
      GROUP BY case_id) d
$$;


-- Every AI call of the day (llm_usage: Claude, embeddings, local models at zero), whatever it was for.
CREATE FUNCTION metrics_cost_between(day_start timestamptz, day_end timestamptz)
RETURNS TABLE (llm_calls integer, llm_cost_usd numeric)
LANGUAGE sql STABLE AS $$
SELECT count(*)::integer, round(coalesce(sum(cost_usd), 0), 6)
FROM llm_usage WHERE created_at >= day_start AND created_at < day_end
$$;


-- Open cases at an instant: created before it and not resolved or closed at it. A case whose status
-- changed at or after the instant is read from its status history (the last move before it, else
-- where the first move after it started from); any other case was then as it is now, except a case
-- imported with its history (no status moves) that was resolved or closed only after the instant.
CREATE FUNCTION backlog_at(moment timestamptz) RETURNS integer
LANGUAGE sql STABLE AS $$
WITH changed AS (
    SELECT DISTINCT case_id FROM case_interactions
    WHERE interaction_type = 'status_change' AND created_at >= moment
)
SELECT (
    (SELECT count(*) FROM cases c
     WHERE c.status NOT IN ('resolved', 'closed') AND c.created_at < moment
       AND NOT EXISTS (SELECT 1 FROM changed x WHERE x.case_id = c.case_id))
  + (SELECT count(*) FROM cases c
     WHERE c.status IN ('resolved', 'closed') AND coalesce(c.resolved_at, c.closed_at, c.created_at) >= moment
       AND c.created_at < moment
       AND NOT EXISTS (SELECT 1 FROM changed x WHERE x.case_id = c.case_id))
  + (SELECT count(*) FROM changed x JOIN cases c USING (case_id)
     WHERE c.created_at < moment
       AND coalesce(
           (SELECT i.to_status FROM case_interactions i
            WHERE i.case_id = x.case_id AND i.interaction_type = 'status_change' AND i.created_at < moment
            ORDER BY i.created_at DESC LIMIT 1),
           (SELECT i.from_status FROM case_interactions i
            WHERE i.case_id = x.case_id AND i.interaction_type = 'status_change' AND i.created_at >= moment
            ORDER BY i.created_at LIMIT 1)) NOT IN ('resolved', 'closed'))
)::integer
$$;


-- One day's figures, every definition above; backlog at the day's end.
CREATE FUNCTION daily_metrics_between(day_start timestamptz, day_end timestamptz)
RETURNS TABLE (received integer, resolved integer, self_service_resolved integer, self_service_rate numeric,
               median_resolution_minutes numeric, csat_avg numeric, csat_count integer, first_responses integer,
               median_first_response_minutes numeric, escalated integer,
               reviews integer, approve_count integer, edit_count integer, reject_count integer,
               escalate_count integer, approve_rate numeric, edit_rate numeric, reject_rate numeric,
               reviewed_cases integer, corrected_cases integer, triage_accuracy numeric, review_sla_breaches integer,
               drafted_cases integer, kb_matched_cases integer, kb_match_rate numeric,
               llm_calls integer, llm_cost_usd numeric, llm_cost_per_case numeric, backlog integer)
LANGUAGE sql STABLE AS $$
SELECT c.received, c.resolved, c.self_service_resolved, c.self_service_rate, c.median_resolution_minutes,
       c.csat_avg, c.csat_count, c.first_responses, c.median_first_response_minutes, c.escalated,
       r.reviews, r.approve_count, r.edit_count, r.reject_count, r.escalate_count,
       r.approve_rate, r.edit_rate, r.reject_rate, r.reviewed_cases, r.corrected_cases, r.triage_accuracy,
       r.review_sla_breaches, k.drafted_cases, k.kb_matched_cases, k.kb_match_rate,
       u.llm_calls, u.llm_cost_usd, round(u.llm_cost_usd / nullif(c.received, 0), 6),
       backlog_at(day_end)
FROM metrics_cases_between(day_start, day_end) c, metrics_reviews_between(day_start, day_end) r,
     metrics_kb_between(day_start, day_end) k, metrics_cost_between(day_start, day_end) u
$$;


CREATE VIEW metrics_daily_cases AS
SELECT d.day, m.* FROM metric_days d CROSS JOIN LATERAL metrics_cases_between(d.day_start, d.day_end) m;

CREATE VIEW metrics_daily_reviews AS
SELECT d.day, m.* FROM metric_days d CROSS JOIN LATERAL metrics_reviews_between(d.day_start, d.day_end) m;

CREATE VIEW metrics_daily_kb AS
SELECT d.day, m.* FROM metric_days d CROSS JOIN LATERAL metrics_kb_between(d.day_start, d.day_end) m;

CREATE VIEW metrics_daily_cost AS
SELECT d.day, m.* FROM metric_days d CROSS JOIN LATERAL metrics_cost_between(d.day_start, d.day_end) m;

CREATE VIEW metrics_daily_backlog AS
SELECT d.day, backlog_at(d.day_end) AS backlog FROM metric_days d;

CREATE VIEW metrics_daily AS
SELECT d.day, m.* FROM metric_days d CROSS JOIN LATERAL daily_metrics_between(d.day_start, d.day_end) m;


-- What each definition reads by time range, so one day costs index ranges, not table scans.
CREATE INDEX cases_resolved_at_idx ON cases (resolved_at) INCLUDE (created_at, resolution_type, csat)
    WHERE resolved_at IS NOT NULL;
CREATE INDEX cases_first_response_at_idx ON cases (first_response_at) INCLUDE (created_at)
    WHERE first_response_at IS NOT NULL;
-- backlog_at: the open cases now, and the done ones by when they were done.
CREATE INDEX cases_open_created_at_idx ON cases (created_at) WHERE status NOT IN ('resolved', 'closed');
CREATE INDEX cases_done_at_idx ON cases ((coalesce(resolved_at, closed_at, created_at))) INCLUDE (created_at)
    WHERE status IN ('resolved', 'closed');
CREATE INDEX case_interactions_status_changes_idx ON case_interactions (created_at) INCLUDE (case_id, to_status)
    WHERE interaction_type = 'status_change';
CREATE INDEX case_interactions_case_status_changes_idx ON case_interactions (case_id, created_at)
    INCLUDE (from_status, to_status) WHERE interaction_type = 'status_change';
CREATE INDEX review_queue_reviewed_at_idx ON review_queue (reviewed_at) WHERE reviewed_at IS NOT NULL;
CREATE INDEX review_queue_due_at_idx ON review_queue (due_at);
CREATE INDEX case_drafts_created_at_idx ON case_drafts (created_at);


-- The report as delivered (figures, changes against the previous 7 days, KB gaps, retraining).
ALTER TABLE daily_metrics ADD COLUMN report jsonb;

-- Each day's report goes once to each destination, however often its jobs run: the row is marked
-- `sending` before the attempt, so a retry looks for what an earlier attempt may have delivered
-- (the email by its Message-ID) before delivering again.
CREATE TABLE report_deliveries (
    metric_date date NOT NULL,
    destination text NOT NULL CHECK (destination IN ('slack', 'email')),
    recipient   text NOT NULL,  -- the channel or address it goes to
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent')),
    attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    message_id  text,  -- email: our Message-ID, fixed when the row is made
    provider_id text,  -- email: Gmail's message id; Slack: the message's ts
    channel_id  text,  -- Slack: the channel's id, the upload needs it
    file_id     text,  -- Slack: the uploaded chart
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    PRIMARY KEY (metric_date, destination),
    CHECK (status <> 'sent' OR sent_at IS NOT NULL)
);
