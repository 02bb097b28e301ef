-- Every table of the n8n reference schema (spec section 9), modernised: uuid keys, timestamptz,
-- CHECKed vocabularies, real foreign keys. The product's own tables are in 0004.
--
-- ON DELETE policy: rows that hold a case's text (interactions, reviews, feedback) go with the
-- case; bookkeeping rows (usage, executions) survive it with case_id set to NULL; a customer with
-- cases cannot be deleted by accident.

CREATE TABLE customers (
    customer_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email        text NOT NULL CHECK (email = lower(email) AND email <> ''),
    name         text,
    company      text,
    account_tier text NOT NULL DEFAULT 'standard'
                 CHECK (account_tier IN ('standard', 'premium', 'enterprise')),
    metadata     jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The CHECK above already forces lower case; the index on lower(email) keeps lookups by
-- lower($1) indexed and stays correct even if the CHECK is ever relaxed.
CREATE UNIQUE INDEX customers_email_key ON customers (lower(email));


CREATE TABLE cases (
    case_id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Shown to people as CX-<short_id>; formatting lives in code, the number here.
    short_id                bigint GENERATED ALWAYS AS IDENTITY (START WITH 1001) UNIQUE,
    customer_id             uuid NOT NULL REFERENCES customers ON DELETE RESTRICT,
    channel                 text NOT NULL
                            CHECK (channel IN ('email', 'webhook', 'slack', 'import', 'web_portal', 'api', 'chat', 'phone')),
    external_id             text,
    gmail_thread_id         text,
    email_message_id        text,
    subject                 text,
    description             text NOT NULL,
    product                 text,
    product_version         text,
    environment             text,
    severity                text CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    -- triage output
    category                text,
    subcategory             text,
    priority                text CHECK (priority IN ('critical', 'high', 'medium', 'low')),
    confidence_score        numeric(4,3) CHECK (confidence_score BETWEEN 0 AND 1),
    sentiment               text CHECK (sentiment IN ('negative', 'neutral', 'positive')),
    language                text,
    summary                 text,
    error_codes             text[] NOT NULL DEFAULT '{}',
    triage_reason           text,
    triage_model            text,
    prompt_version          text,
    -- lifecycle (0005 adds the allowed transitions between statuses)
    status                  text NOT NULL DEFAULT 'new'
                            CHECK (status IN ('new', 'triaged', 'drafting', 'awaiting_review', 'sending', 'replied',
                                              'resolved', 'closed', 'human_owned', 'escalated', 'reopened')),
    owner_slack_user_id     text,  -- NULL: the bot owns the case
    escalated               boolean NOT NULL DEFAULT false,
    jira_issue_key          text,
    resolution_type         text CHECK (resolution_type IN ('self_service', 'collaborative', 'human', 'escalated')),
    csat                    smallint CHECK (csat BETWEEN 1 AND 5),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    triaged_at              timestamptz,
    first_response_at       timestamptz,
    resolved_at             timestamptz,
    closed_at               timestamptz,
    -- Derived, so it can never disagree with the timestamps (the reference never filled it).
    resolution_time_minutes integer GENERATED ALWAYS AS
                            ((extract(epoch FROM resolved_at - created_at) / 60)::integer) STORED,
    metadata                jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX cases_status_idx ON cases (status);
CREATE INDEX cases_created_at_idx ON cases (created_at DESC);
CREATE INDEX cases_customer_id_idx ON cases (customer_id);
CREATE INDEX cases_category_idx ON cases (category, subcategory);
CREATE INDEX cases_owner_idx ON cases (owner_slack_user_id) WHERE owner_slack_user_id IS NOT NULL;
CREATE INDEX cases_gmail_thread_idx ON cases (gmail_thread_id) WHERE gmail_thread_id IS NOT NULL;
-- Webhook idempotency: a retried delivery finds the case it already created.
CREATE UNIQUE INDEX cases_channel_external_id_key ON cases (channel, external_id) WHERE external_id IS NOT NULL;
CREATE UNIQUE INDEX cases_email_message_id_key ON cases (email_message_id) WHERE email_message_id IS NOT NULL;
-- `/case words`: queries must repeat this exact expression to use the index.
CREATE INDEX cases_search_idx ON cases
    USING gin (to_tsvector('simple', coalesce(subject, '') || ' ' || description));


CREATE TABLE case_interactions (
    interaction_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    case_id             uuid NOT NULL REFERENCES cases ON DELETE CASCADE,
    actor_type          text NOT NULL CHECK (actor_type IN ('system', 'ai', 'customer', 'reviewer', 'agent')),
    actor_id            text,
    interaction_type    text NOT NULL
                        CHECK (interaction_type IN ('email_in', 'email_out', 'webhook_in', 'callback_out', 'slack_in',
                                                    'import', 'note', 'status_change', 'triage', 'draft',
                                                    'review_action', 'assignment', 'escalation', 'csat')),
    message             text,
    from_status         text,
    to_status           text,
    external_message_id text,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX case_interactions_case_idx ON case_interactions (case_id, created_at);
CREATE INDEX case_interactions_created_at_idx ON case_interactions (created_at);
-- The same inbound or outbound message is never appended twice.
CREATE UNIQUE INDEX case_interactions_external_message_id_key
    ON case_interactions (external_message_id) WHERE external_message_id IS NOT NULL;


CREATE TABLE kb_articles (
    article_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title           text NOT NULL,
    content         text NOT NULL,
    category        text,
    subcategory     text,
    tags            text[] NOT NULL DEFAULT '{}',
    url             text,
    source          text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'confluence', 'generated', 'import')),
    source_id       text,
    status          text NOT NULL DEFAULT 'published' CHECK (status IN ('draft', 'published', 'archived')),
    auto_generated  boolean NOT NULL DEFAULT false,
    human_validated boolean NOT NULL DEFAULT false,
    validated_by    text,
    view_count      integer NOT NULL DEFAULT 0 CHECK (view_count >= 0),
    success_count   integer NOT NULL DEFAULT 0 CHECK (success_count >= 0),
    content_hash    text,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, source_id)
);

CREATE INDEX kb_articles_category_idx ON kb_articles (category, subcategory);
CREATE INDEX kb_articles_tags_idx ON kb_articles USING gin (tags);


CREATE TABLE error_codes (
    error_code              text PRIMARY KEY,
    product                 text,
    description             text NOT NULL,
    severity                text CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    diagnostic_steps        text[] NOT NULL DEFAULT '{}',
    resolution_steps        text[] NOT NULL DEFAULT '{}',
    automated_fix_available boolean NOT NULL DEFAULT false,
    automation_script       text,
    kb_article_id           uuid REFERENCES kb_articles ON DELETE SET NULL,
    occurrence_count        integer NOT NULL DEFAULT 0 CHECK (occurrence_count >= 0),
    last_seen_at            timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);


CREATE TABLE health_metrics (
    metric_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    metric_name        text NOT NULL,
    metric_value       double precision NOT NULL,
    unit               text,
    threshold_warning  double precision,
    threshold_critical double precision,
    status             text CHECK (status IN ('normal', 'warning', 'critical')),
    source             text,
    metadata           jsonb NOT NULL DEFAULT '{}',
    recorded_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX health_metrics_name_recorded_idx ON health_metrics (metric_name, recorded_at DESC);
CREATE INDEX health_metrics_recorded_at_idx ON health_metrics (recorded_at DESC);


CREATE TABLE proactive_alerts (
    alert_id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    fingerprint           text NOT NULL,
    alert_type            text NOT NULL
                          CHECK (alert_type IN ('error_code', 'health_metric', 'volume_spike', 'cluster', 'budget')),
    severity              text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    status                text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    title                 text NOT NULL,
    description           text,
    root_cause_hypothesis text,
    affected_customers    uuid[] NOT NULL DEFAULT '{}',
    evidence              jsonb NOT NULL DEFAULT '{}',
    occurrence_count      integer NOT NULL DEFAULT 1 CHECK (occurrence_count >= 1),
    first_seen_at         timestamptz NOT NULL DEFAULT now(),
    last_seen_at          timestamptz NOT NULL DEFAULT now(),
    jira_issue_key        text,
    acknowledged_by       text,
    acknowledged_at       timestamptz,
    resolved_by           text,
    resolved_at           timestamptz,
    metadata              jsonb NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'resolved' OR resolved_at IS NOT NULL)
);

-- While an alert is open (or acknowledged), new evidence with the same fingerprint updates it;
-- after it is resolved, the same fingerprint may open a new alert.
CREATE UNIQUE INDEX proactive_alerts_open_fingerprint_key ON proactive_alerts (fingerprint) WHERE status <> 'resolved';
CREATE INDEX proactive_alerts_status_idx ON proactive_alerts (status, last_seen_at DESC);


CREATE TABLE review_queue (
    review_id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    case_id           uuid NOT NULL REFERENCES cases ON DELETE CASCADE,
    draft             text,  -- NULL: a card without a draft (low confidence)
    ai_confidence     numeric(4,3) CHECK (ai_confidence BETWEEN 0 AND 1),
    review_reason     text,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'approved', 'edited', 'rejected', 'escalated', 'expired')),
    assigned_to       text,
    reviewed_by       text,
    reviewed_at       timestamptz,
    reviewer_comments text,
    final_solution    text,
    due_at            timestamptz,
    reminder_sent_at  timestamptz,
    escalated_at      timestamptz,
    -- Optimistic concurrency: an action updates WHERE version = <seen> and bumps it, so of two
    -- reviewers clicking at once exactly one wins.
    version           integer NOT NULL DEFAULT 1,
    metadata          jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX review_queue_one_pending_per_case ON review_queue (case_id) WHERE status = 'pending';
CREATE INDEX review_queue_status_idx ON review_queue (status, created_at);
CREATE INDEX review_queue_case_idx ON review_queue (case_id);
CREATE INDEX review_queue_due_idx ON review_queue (due_at) WHERE status = 'pending';


CREATE TABLE workflow_executions (
    execution_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_name text NOT NULL,
    case_id       uuid REFERENCES cases ON DELETE SET NULL,
    status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'success', 'error', 'skipped')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    -- Derived from the timestamps (the reference declared it and never wrote it).
    duration_ms   bigint GENERATED ALWAYS AS ((extract(epoch FROM finished_at - started_at) * 1000)::bigint) STORED,
    error_message text,
    metadata      jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX workflow_executions_name_idx ON workflow_executions (workflow_name, started_at DESC);
CREATE INDEX workflow_executions_started_at_idx ON workflow_executions (started_at DESC);
CREATE INDEX workflow_executions_case_idx ON workflow_executions (case_id) WHERE case_id IS NOT NULL;


CREATE TABLE agent_feedback (
    feedback_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    case_id       uuid NOT NULL REFERENCES cases ON DELETE CASCADE,
    review_id     uuid REFERENCES review_queue ON DELETE SET NULL,
    agent_name    text,  -- the AI step judged, e.g. triage or draft
    feedback_type text NOT NULL CHECK (feedback_type IN ('approval', 'edit', 'rejection', 'correction', 'escalation')),
    field         text CHECK (field IN ('category', 'subcategory', 'priority', 'sentiment', 'language', 'draft')),
    ai_value      text,
    human_value   text,
    reviewer      text,
    comment       text,
    metadata      jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX agent_feedback_created_at_idx ON agent_feedback (created_at);
CREATE INDEX agent_feedback_case_idx ON agent_feedback (case_id);


CREATE TABLE batch_jobs (
    batch_job_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    batch_id          text NOT NULL UNIQUE,
    provider          text NOT NULL CHECK (provider IN ('openai', 'anthropic')),
    workflow_name     text NOT NULL,
    workflow_stage    text NOT NULL,
    parent_run_id     text NOT NULL,
    status            text NOT NULL DEFAULT 'submitted'
                      CHECK (status IN ('submitted', 'in_progress', 'completed', 'failed', 'expired', 'cancelled', 'timed_out')),
    input_file_id     text,
    results_url       text,
    -- The job-queue entrypoint that consumes the results (replaces the n8n resume_url).
    resume_entrypoint text,
    context_data      jsonb NOT NULL DEFAULT '{}',
    request_count     integer NOT NULL DEFAULT 0 CHECK (request_count >= 0),
    succeeded_count   integer CHECK (succeeded_count >= 0),
    failed_count      integer CHECK (failed_count >= 0),
    result_payload    jsonb,
    error_message     text,
    submitted_at      timestamptz NOT NULL DEFAULT now(),
    -- A batch still unfinished at expires_at is given up (timed_out) and its work done synchronously.
    expires_at        timestamptz NOT NULL DEFAULT now() + interval '2 hours',
    last_polled_at    timestamptz,
    completed_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX batch_jobs_pending_idx ON batch_jobs (submitted_at) WHERE status IN ('submitted', 'in_progress');
CREATE INDEX batch_jobs_provider_status_idx ON batch_jobs (provider, status);
CREATE INDEX batch_jobs_parent_run_idx ON batch_jobs (parent_run_id);
CREATE INDEX batch_jobs_submitted_at_idx ON batch_jobs (submitted_at DESC);


-- The reference's token_usage: one row per LLM or embedding call, really written this time.
CREATE TABLE llm_usage (
    usage_id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    step                  text NOT NULL,
    provider              text NOT NULL CHECK (provider IN ('anthropic', 'openai', 'local')),
    model                 text NOT NULL,
    input_tokens          integer NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens         integer NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cached_tokens         integer NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0),
    cost_usd              numeric(12,6),
    latency_ms            integer,
    success               boolean NOT NULL DEFAULT true,
    error                 text,
    case_id               uuid REFERENCES cases ON DELETE SET NULL,
    workflow_execution_id uuid REFERENCES workflow_executions ON DELETE SET NULL,
    batch_job_id          uuid REFERENCES batch_jobs ON DELETE SET NULL,
    prompt_version        text,
    metadata              jsonb NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX llm_usage_created_at_idx ON llm_usage (created_at DESC);
CREATE INDEX llm_usage_case_idx ON llm_usage (case_id) WHERE case_id IS NOT NULL;
CREATE INDEX llm_usage_provider_idx ON llm_usage (provider, created_at DESC);


-- Prices per million tokens. A call's cost uses the row whose model_prefix is the LONGEST prefix
-- of the full model id (claude-sonnet-4-5-20250929 -> claude-sonnet-4), latest effective_from
-- not in the future; the reference matched exactly and so never priced anything.
CREATE TABLE api_pricing (
    provider              text NOT NULL CHECK (provider IN ('anthropic', 'openai', 'local')),
    model_prefix          text NOT NULL CHECK (model_prefix <> ''),
    input_per_mtok        numeric(10,4) NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok       numeric(10,4) NOT NULL DEFAULT 0 CHECK (output_per_mtok >= 0),
    cache_read_per_mtok   numeric(10,4) CHECK (cache_read_per_mtok >= 0),
    effective_from        timestamptz NOT NULL DEFAULT now(),
    created_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, model_prefix, effective_from)
);

-- List prices in USD. claude-opus-4-5 and gpt-4o-mini are priced apart from their shorter
-- prefixes (5/25 and 0.15/0.60), which is what longest-prefix matching is for.
INSERT INTO api_pricing (provider, model_prefix, input_per_mtok, output_per_mtok, cache_read_per_mtok, effective_from) VALUES
    ('anthropic', 'claude-sonnet-4',        3.00, 15.00, 0.30,  '2025-01-01 00:00+00'),
    ('anthropic', 'claude-opus-4',         15.00, 75.00, 1.50,  '2025-01-01 00:00+00'),
    ('anthropic', 'claude-opus-4-5',        5.00, 25.00, 0.50,  '2025-01-01 00:00+00'),
    ('anthropic', 'claude-haiku-4',         1.00,  5.00, 0.10,  '2025-01-01 00:00+00'),
    ('anthropic', 'claude-3-5-haiku',       0.80,  4.00, 0.08,  '2025-01-01 00:00+00'),
    ('openai',    'text-embedding-3-small', 0.02,  0.00, NULL,  '2025-01-01 00:00+00'),
    ('openai',    'text-embedding-3-large', 0.13,  0.00, NULL,  '2025-01-01 00:00+00'),
    ('openai',    'gpt-4o',                 2.50, 10.00, 1.25,  '2025-01-01 00:00+00'),
    ('openai',    'gpt-4o-mini',            0.15,  0.60, 0.075, '2025-01-01 00:00+00');


-- The period is the current calendar day or month (budget_type) in the configured timezone,
-- computed at query time; the reference stored a period_start and so measured daily budgets
-- against month-to-date usage.
CREATE TABLE token_budgets (
    budget_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    budget_name        text NOT NULL UNIQUE,
    provider           text NOT NULL CHECK (provider IN ('anthropic', 'openai', 'local')),
    budget_type        text NOT NULL CHECK (budget_type IN ('daily', 'monthly')),
    token_limit        bigint CHECK (token_limit > 0),
    cost_limit_usd     numeric(12,2) CHECK (cost_limit_usd > 0),
    warning_threshold  numeric(3,2) NOT NULL DEFAULT 0.80 CHECK (warning_threshold BETWEEN 0 AND 1),
    critical_threshold numeric(3,2) NOT NULL DEFAULT 0.95 CHECK (critical_threshold BETWEEN 0 AND 1),
    is_active          boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (warning_threshold <= critical_threshold)
);

INSERT INTO token_budgets (budget_name, provider, budget_type, token_limit, cost_limit_usd) VALUES
    ('Anthropic Monthly', 'anthropic', 'monthly', 10000000, 3000),
    ('OpenAI Monthly',    'openai',    'monthly',  5000000,  500),
    ('Anthropic Daily',   'anthropic', 'daily',     500000,  150),
    ('OpenAI Daily',      'openai',    'daily',     250000,   25);


CREATE TABLE baseline_config (
    key         text PRIMARY KEY,
    value       numeric NOT NULL,
    description text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO baseline_config (key, value, description) VALUES
    ('manual_cost_per_case',          20,   'USD per case handled fully by hand'),
    ('manual_avg_resolution_minutes', 45,   'minutes per case handled fully by hand'),
    ('hourly_support_cost',           35,   'USD per support hour'),
    ('self_service_cost_per_case',     2,   'USD per self-service case'),
    ('collaborative_cost_per_case',   10,   'USD per AI-drafted, human-reviewed case'),
    ('escalated_cost_per_case',       25,   'USD per escalated case'),
    ('target_self_service_rate',       0.85, 'fraction of cases'),
    ('target_csat_score',              4.5,  'CSAT 1-5');


-- One row per day (in the configured timezone). Rates are fractions 0..1; their definitions
-- live with the daily job.
CREATE TABLE daily_metrics (
    metric_date                    date PRIMARY KEY,
    received                       integer NOT NULL DEFAULT 0,
    resolved                       integer NOT NULL DEFAULT 0,
    escalated                      integer NOT NULL DEFAULT 0,
    self_service_rate              numeric(5,4) CHECK (self_service_rate BETWEEN 0 AND 1),
    approve_rate                   numeric(5,4) CHECK (approve_rate BETWEEN 0 AND 1),
    edit_rate                      numeric(5,4) CHECK (edit_rate BETWEEN 0 AND 1),
    reject_rate                    numeric(5,4) CHECK (reject_rate BETWEEN 0 AND 1),
    median_first_response_minutes  numeric(10,1),
    median_resolution_minutes      numeric(10,1),
    csat_avg                       numeric(3,2) CHECK (csat_avg BETWEEN 1 AND 5),
    csat_count                     integer NOT NULL DEFAULT 0,
    triage_accuracy                numeric(5,4) CHECK (triage_accuracy BETWEEN 0 AND 1),
    kb_match_rate                  numeric(5,4) CHECK (kb_match_rate BETWEEN 0 AND 1),
    llm_cost_usd                   numeric(12,6) NOT NULL DEFAULT 0,
    cost_per_case                  numeric(12,6),
    extra                          jsonb NOT NULL DEFAULT '{}',
    computed_at                    timestamptz NOT NULL DEFAULT now()
);


CREATE TABLE improvement_opportunities (
    opportunity_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    opportunity_type text NOT NULL
                     CHECK (opportunity_type IN ('kb_gap', 'escalation_pattern', 'low_confidence', 'recurring_issue')),
    fingerprint      text NOT NULL,
    title            text NOT NULL,
    description      text,
    category         text,
    subcategory      text,
    frequency        integer NOT NULL DEFAULT 1 CHECK (frequency >= 0),
    impact_score     numeric(4,3) CHECK (impact_score BETWEEN 0 AND 1),
    case_ids         uuid[] NOT NULL DEFAULT '{}',
    article_id       uuid REFERENCES kb_articles ON DELETE SET NULL,
    jira_issue_key   text,
    status           text NOT NULL DEFAULT 'identified'
                     CHECK (status IN ('identified', 'in_progress', 'resolved', 'dismissed')),
    first_detected_at timestamptz NOT NULL DEFAULT now(),
    last_detected_at timestamptz NOT NULL DEFAULT now(),
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- A gap or recurring defect found again on a later day updates its open row (and its one Jira
-- issue) instead of filing another.
CREATE UNIQUE INDEX improvement_opportunities_open_fingerprint_key
    ON improvement_opportunities (opportunity_type, fingerprint) WHERE status IN ('identified', 'in_progress');
CREATE INDEX improvement_opportunities_status_idx ON improvement_opportunities (status, opportunity_type);
