-- The AI cost counter of /metrics (cx_llm_cost_usd_total, by step and provider) without summing
-- llm_usage on every scrape: that took 200 ms at 300k rows and grows with the retention window.
-- Each statement that records calls appends its cost to llm_cost_ledger (a plain insert: no row two
-- writers wait on); a scrape folds the ledger into llm_cost_totals with one statement and reads both.
-- Deleting llm_usage rows (retention, erasure) does not touch either, so the counter never goes down.
CREATE TABLE llm_cost_totals (
    step       text NOT NULL,
    provider   text NOT NULL,
    cost_usd   numeric NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    PRIMARY KEY (step, provider)
);

CREATE TABLE llm_cost_ledger (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    step       text NOT NULL,
    provider   text NOT NULL,
    cost_usd   numeric NOT NULL CHECK (cost_usd >= 0)
);

CREATE FUNCTION llm_usage_cost_to_ledger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO llm_cost_ledger (step, provider, cost_usd)
    SELECT step, provider, coalesce(sum(cost_usd), 0) FROM recorded GROUP BY step, provider;
    RETURN NULL;
END
$$;

CREATE TRIGGER llm_usage_cost_to_ledger AFTER INSERT ON llm_usage
    REFERENCING NEW TABLE AS recorded FOR EACH STATEMENT EXECUTE FUNCTION llm_usage_cost_to_ledger();

-- What was recorded before: the rows kept and the hours retention rolled up (0023).
INSERT INTO llm_cost_totals (step, provider, cost_usd)
SELECT step, provider, sum(cost_usd)
FROM (SELECT step, provider, coalesce(sum(cost_usd), 0) AS cost_usd FROM llm_usage GROUP BY 1, 2
      UNION ALL
      SELECT step, provider, sum(cost_usd) FROM llm_usage_hourly GROUP BY 1, 2) t
GROUP BY 1, 2;
