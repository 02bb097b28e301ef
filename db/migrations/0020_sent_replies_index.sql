-- The replies sent most recently, read by every draft for the desk's house-style examples
-- (pipelines/drafting/house_style.py).
CREATE INDEX reply_outbox_sent_idx ON reply_outbox (sent_at DESC) WHERE status = 'sent';
