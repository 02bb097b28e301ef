-- Prompt-cache writes are billed above the input price (Anthropic: 1.25x for the 5-minute cache);
-- until now only cache reads were counted, so a write's cost was never recorded.
ALTER TABLE llm_usage ADD COLUMN cache_write_tokens integer NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0);
ALTER TABLE api_pricing ADD COLUMN cache_write_per_mtok numeric(10,4) CHECK (cache_write_per_mtok >= 0);
UPDATE api_pricing SET cache_write_per_mtok = round(input_per_mtok * 1.25, 4) WHERE provider = 'anthropic';

-- A critical case's alert (posted to the alerts channel when triage routes it to a person at once)
-- is a proactive alert of its own kind, so detection can attach evidence to it like to any other.
ALTER TABLE proactive_alerts DROP CONSTRAINT proactive_alerts_alert_type_check;
ALTER TABLE proactive_alerts ADD CONSTRAINT proactive_alerts_alert_type_check
    CHECK (alert_type IN ('error_code', 'health_metric', 'volume_spike', 'cluster', 'budget', 'urgent_case'));

-- A query embedding costs about $0.0000001 (6 tokens at $0.02 a million): at six decimals every
-- search was recorded as free. Ten decimals keep a single call's cost.
ALTER TABLE llm_usage ALTER COLUMN cost_usd TYPE numeric(16,10);
