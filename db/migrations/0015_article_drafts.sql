-- Article drafts for KB gaps: written by Claude (or a template offline), posted to the metrics
-- channel, and published into the knowledge base only when a reviewer says so.

CREATE TABLE article_drafts (
    draft_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- One draft per gap: a redelivered KB_DRAFT job finds it instead of drafting again.
    opportunity_id  uuid NOT NULL UNIQUE REFERENCES improvement_opportunities ON DELETE CASCADE,
    title           text NOT NULL CHECK (title <> ''),
    summary         text,
    body            text NOT NULL CHECK (body <> ''),
    tags            text[] NOT NULL DEFAULT '{}',
    category        text,
    subcategory     text,
    case_ids        uuid[] NOT NULL DEFAULT '{}',
    drafter         text NOT NULL CHECK (drafter IN ('claude', 'template')),
    model           text,
    prompt_version  text,
    status          text NOT NULL DEFAULT 'drafted' CHECK (status IN ('drafted', 'published', 'discarded')),
    edited_by       text,
    edited_at       timestamptz,
    slack_channel   text,
    slack_ts        text,
    decided_by      text,
    decided_at      timestamptz,
    article_id      uuid REFERENCES kb_articles ON DELETE SET NULL,
    -- The Confluence page, once created: a retried Publish finds it instead of creating another.
    confluence_page_id text,
    confluence_url  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'drafted') = (decided_by IS NULL)),
    CHECK (status <> 'published' OR article_id IS NOT NULL)
);

CREATE INDEX article_drafts_status_idx ON article_drafts (status, created_at);
