-- What the product adds to the reference schema (spec section 9): vector search, labelled
-- history, exactly-once replies, Slack and Gmail bookkeeping, alert evidence, scheduler claims.
--
-- Embedding columns are plain `vector`, without a fixed dimension: the dimension follows the
-- deployment's embedding provider (local all-MiniLM-L6-v2 = 384, OpenAI text-embedding-3-small
-- = 1536), recorded once in embedding_space. HNSW needs a fixed dimension, so each supported one
-- gets a partial expression index (pgvector's pattern for mixed dimensions); a query uses it with
--   ORDER BY embedding::vector(384) <=> $1::vector(384) ... WHERE vector_dims(embedding) = 384
-- Any other dimension still works, by sequential scan.

-- The one embedding model of this deployment; code refuses to mix models.
CREATE TABLE embedding_space (
    id         smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    provider   text NOT NULL CHECK (provider IN ('openai', 'local')),
    model      text NOT NULL,
    dimensions integer NOT NULL CHECK (dimensions BETWEEN 1 AND 16000),
    created_at timestamptz NOT NULL DEFAULT now()
);


CREATE TABLE kb_chunks (
    chunk_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    article_id  uuid NOT NULL REFERENCES kb_articles ON DELETE CASCADE,
    ordinal     integer NOT NULL CHECK (ordinal >= 0),
    heading     text,
    content     text NOT NULL,
    token_count integer CHECK (token_count >= 0),
    embedding   vector,  -- NULL until embedded, and always with the "none" provider
    tsv         tsvector GENERATED ALWAYS AS (to_tsvector('english', coalesce(heading, '') || ' ' || content)) STORED,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (article_id, ordinal)
);

CREATE INDEX kb_chunks_tsv_idx ON kb_chunks USING gin (tsv);
CREATE INDEX kb_chunks_embedding_384_idx ON kb_chunks
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE vector_dims(embedding) = 384;
CREATE INDEX kb_chunks_embedding_1536_idx ON kb_chunks
    USING hnsw ((embedding::vector(1536)) vector_cosine_ops) WHERE vector_dims(embedding) = 1536;


-- Labelled history for the local classifier: imported CSVs, reviewer corrections, resolved cases.
CREATE TABLE labelled_examples (
    example_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    text        text NOT NULL,
    category    text NOT NULL,
    subcategory text,
    priority    text CHECK (priority IN ('critical', 'high', 'medium', 'low')),
    source      text NOT NULL CHECK (source IN ('import', 'correction', 'case', 'seed')),
    case_id     uuid REFERENCES cases ON DELETE CASCADE,
    embedding   vector,
    weight      real NOT NULL DEFAULT 1 CHECK (weight > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Re-importing the same CSV adds nothing: ON CONFLICT (source, md5(text), category, subcategory) DO NOTHING.
CREATE UNIQUE INDEX labelled_examples_dedupe_key
    ON labelled_examples (source, md5(text), category, subcategory) NULLS NOT DISTINCT;
CREATE INDEX labelled_examples_case_idx ON labelled_examples (case_id) WHERE case_id IS NOT NULL;
CREATE INDEX labelled_examples_embedding_384_idx ON labelled_examples
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE vector_dims(embedding) = 384;
CREATE INDEX labelled_examples_embedding_1536_idx ON labelled_examples
    USING hnsw ((embedding::vector(1536)) vector_cosine_ops) WHERE vector_dims(embedding) = 1536;


-- For similar-case search and clustering near-duplicate new cases into one incident.
CREATE TABLE case_embeddings (
    case_id    uuid PRIMARY KEY REFERENCES cases ON DELETE CASCADE,
    embedding  vector NOT NULL,
    model      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX case_embeddings_embedding_384_idx ON case_embeddings
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE vector_dims(embedding) = 384;
CREATE INDEX case_embeddings_embedding_1536_idx ON case_embeddings
    USING hnsw ((embedding::vector(1536)) vector_cosine_ops) WHERE vector_dims(embedding) = 1536;


-- Customer replies. draft_key is unique, so one draft is sent at most once, however many
-- workers or retries try.
CREATE TABLE reply_outbox (
    outbox_id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    case_id             uuid NOT NULL REFERENCES cases ON DELETE CASCADE,
    review_id           uuid REFERENCES review_queue ON DELETE SET NULL,
    draft_key           text NOT NULL UNIQUE,
    channel             text NOT NULL CHECK (channel IN ('email', 'callback', 'slack')),
    to_address          text NOT NULL,
    subject             text,
    body                text NOT NULL,
    in_reply_to         text,
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error          text,
    provider_message_id text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    CHECK (status <> 'sent' OR sent_at IS NOT NULL)
);

CREATE INDEX reply_outbox_case_idx ON reply_outbox (case_id);
CREATE INDEX reply_outbox_unsent_idx ON reply_outbox (created_at) WHERE status IN ('pending', 'sending');


-- Where the bot posted, so cards and alerts are updated in place. A message belongs to at most
-- one of a case, an alert or a KB article draft (none: e.g. the daily metrics post).
CREATE TABLE slack_messages (
    slack_message_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    case_id          uuid REFERENCES cases ON DELETE CASCADE,
    alert_id         uuid REFERENCES proactive_alerts ON DELETE CASCADE,
    article_id       uuid REFERENCES kb_articles ON DELETE CASCADE,
    purpose          text NOT NULL CHECK (purpose IN ('review_card', 'alert', 'thread_reminder', 'kb_draft', 'metrics')),
    channel_id       text NOT NULL,
    ts               text NOT NULL,
    thread_ts        text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel_id, ts),
    CHECK (num_nonnulls(case_id, alert_id, article_id) <= 1)
);

CREATE UNIQUE INDEX slack_messages_case_purpose_key ON slack_messages (case_id, purpose) WHERE case_id IS NOT NULL;
CREATE UNIQUE INDEX slack_messages_alert_purpose_key ON slack_messages (alert_id, purpose) WHERE alert_id IS NOT NULL;
CREATE UNIQUE INDEX slack_messages_article_purpose_key ON slack_messages (article_id, purpose) WHERE article_id IS NOT NULL;


-- Slack retries deliveries; a second copy of an event finds its id here and has no effect.
CREATE TABLE slack_events_seen (
    event_id    text PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX slack_events_seen_received_at_idx ON slack_events_seen (received_at);


CREATE TABLE gmail_sync_state (
    mailbox           text PRIMARY KEY,
    history_id        bigint,
    last_full_sync_at timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Each Gmail message is processed once, whatever the outcome.
CREATE TABLE gmail_messages_seen (
    gmail_message_id text PRIMARY KEY,
    mailbox          text NOT NULL,
    thread_id        text,
    case_id          uuid REFERENCES cases ON DELETE SET NULL,
    outcome          text NOT NULL CHECK (outcome IN ('created', 'appended', 'skipped', 'failed')),
    reason           text,
    processed_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX gmail_messages_seen_processed_at_idx ON gmail_messages_seen (mailbox, processed_at);


-- Evidence already attached to an alert: seeing it again updates seen_at, not Slack.
CREATE TABLE alert_evidence (
    alert_id     uuid NOT NULL REFERENCES proactive_alerts ON DELETE CASCADE,
    evidence_key text NOT NULL,
    details      jsonb NOT NULL DEFAULT '{}',
    seen_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, evidence_key)
);


-- One row per scheduled job and period: with several schedulers running, the first INSERT wins.
CREATE TABLE scheduled_runs (
    job_name    text NOT NULL,
    period_key  text NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_name, period_key)
);


-- Every KB search with its best score: the KB match rate and the gap detector read these.
-- origin separates the pipeline's searches (which the match rate counts) from people's /kb.
CREATE TABLE kb_searches (
    search_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    query      text NOT NULL,
    case_id    uuid REFERENCES cases ON DELETE CASCADE,
    origin     text NOT NULL DEFAULT 'pipeline' CHECK (origin IN ('pipeline', 'slack', 'cli')),
    top_score  real,
    results    jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX kb_searches_created_at_idx ON kb_searches (created_at);
CREATE INDEX kb_searches_case_idx ON kb_searches (case_id) WHERE case_id IS NOT NULL;
