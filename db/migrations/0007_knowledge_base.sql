-- Knowledge base chunks change by content hash (only changed chunks are re-embedded); full-text
-- search weighs the article's title and tags (A) and the chunk's heading path (B) above its body,
-- and scores by BM25 with document frequencies from kb_lexemes; drafts are kept with the
-- auto-send decision and its reason.

ALTER TABLE kb_chunks ADD COLUMN content_hash text NOT NULL DEFAULT '';
ALTER TABLE kb_chunks ALTER COLUMN content_hash DROP DEFAULT;
ALTER TABLE kb_chunks ADD COLUMN title_terms text NOT NULL DEFAULT '';
ALTER TABLE kb_chunks DROP COLUMN tsv;
ALTER TABLE kb_chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', title_terms), 'A') || setweight(to_tsvector('english', coalesce(heading, '')), 'B')
    || setweight(to_tsvector('english', content), 'D')
) STORED;
CREATE INDEX kb_chunks_tsv_idx ON kb_chunks USING gin (tsv);
CREATE INDEX kb_chunks_unembedded_idx ON kb_chunks (article_id) WHERE embedding IS NULL;

-- In how many published chunks each lexeme occurs (BM25's IDF), refreshed after every import.
CREATE MATERIALIZED VIEW kb_lexemes AS
    SELECT word AS lexeme, ndoc FROM ts_stat(
        -- Qualified: Postgres 17+ runs materialized view maintenance with a search_path of pg_catalog only.
        'SELECT c.tsv FROM public.kb_chunks c JOIN public.kb_articles a USING (article_id) WHERE a.status = ''published''');
CREATE UNIQUE INDEX kb_lexemes_lexeme_key ON kb_lexemes (lexeme);
CREATE MATERIALIZED VIEW kb_corpus AS
    SELECT count(*) AS chunks, coalesce(avg(length(c.tsv)), 1)::real AS avg_length
    FROM kb_chunks c JOIN kb_articles a USING (article_id) WHERE a.status = 'published';

CREATE TABLE case_drafts (
    draft_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    case_id           uuid NOT NULL REFERENCES cases ON DELETE CASCADE,
    body              text NOT NULL,
    cited_article_ids uuid[] NOT NULL DEFAULT '{}',
    -- Ids the model cited that were not among the retrieved articles: dropped, kept for audit.
    dropped_citations text[] NOT NULL DEFAULT '{}',
    confidence        real NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    questions         text[] NOT NULL DEFAULT '{}',
    risks             text[] NOT NULL DEFAULT '{}',
    drafter           text NOT NULL CHECK (drafter IN ('claude', 'extractive')),
    model             text,
    prompt_version    text,
    decision          text NOT NULL CHECK (decision IN ('auto_send', 'review')),
    decision_reason   text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX case_drafts_case_idx ON case_drafts (case_id, created_at DESC);

ALTER TABLE reply_outbox
    ADD COLUMN draft_id uuid REFERENCES case_drafts ON DELETE SET NULL,
    ADD COLUMN thread_id text,
    ADD COLUMN references_header text,
    -- Our own Message-ID for the reply, fixed before the first attempt: a retry searches the
    -- sent mail for it before sending again.
    ADD COLUMN message_id text,
    ADD COLUMN approved_by text;  -- NULL: sent by the auto-send policy
