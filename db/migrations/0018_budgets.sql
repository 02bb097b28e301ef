-- Budgets in dollars, as the issue defines them: a daily or monthly limit (budget_type, in TIMEZONE's
-- local day or month) on llm_usage.cost_usd, for one step or all (step NULL) and one provider or all
-- (provider NULL). The reference's token limits and critical threshold are not used.
ALTER TABLE token_budgets ADD COLUMN step text;
ALTER TABLE token_budgets ALTER COLUMN provider DROP NOT NULL;
ALTER TABLE token_budgets ALTER COLUMN cost_limit_usd SET NOT NULL;

-- The warning (at warning_threshold) and the "budget reached" notice are posted once per budget and period.
CREATE TABLE budget_notices (
    budget_id    uuid NOT NULL REFERENCES token_budgets ON DELETE CASCADE,
    period_start date NOT NULL,
    level        text NOT NULL CHECK (level IN ('warning', 'exhausted')),
    posted_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (budget_id, period_start, level)
);
