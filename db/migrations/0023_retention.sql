-- Retention (issue 15): llm_usage detail rows older than RETENTION_LLM_USAGE_DAYS are deleted, but the
-- cost they record is not: the same statement that deletes a batch adds it here, per UTC hour, step,
-- provider and model. An hour (not a day) so that any report timezone with whole-hour offsets still
-- gets its local day's cost exactly.
CREATE TABLE llm_usage_hourly (
    hour               timestamptz NOT NULL CHECK (hour = date_trunc('hour', hour)),
    step               text NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    calls              integer NOT NULL CHECK (calls >= 0),
    failed_calls       integer NOT NULL CHECK (failed_calls >= 0),
    input_tokens       bigint NOT NULL CHECK (input_tokens >= 0),
    output_tokens      bigint NOT NULL CHECK (output_tokens >= 0),
    cached_tokens      bigint NOT NULL CHECK (cached_tokens >= 0),
    cache_write_tokens bigint NOT NULL CHECK (cache_write_tokens >= 0),
    cost_usd           numeric(20,10) NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, step, provider, model)
);

-- The daily cost figure reads the detail rows still there and the hours rolled up from deleted ones,
-- so metrics_daily and metrics_daily_cost say the same before and after a retention pass.
CREATE OR REPLACE FUNCTION metrics_cost_between(day_start timestamptz, day_end timestamptz)
RETURNS TABLE (llm_calls integer, llm_cost_usd numeric)
LANGUAGE sql STABLE AS $$
SELECT (d.calls + h.calls)::integer, round(d.cost + h.cost, 6)
FROM (SELECT count(*) AS calls, coalesce(sum(cost_usd), 0) AS cost
      FROM llm_usage WHERE created_at >= day_start AND created_at < day_end) d,
     (SELECT coalesce(sum(calls), 0) AS calls, coalesce(sum(cost_usd), 0) AS cost
      FROM llm_usage_hourly WHERE hour >= day_start AND hour < day_end) h
$$;
