-- A reviewer may write the reply to a case that has no AI draft (Edit on a human-owned card):
-- it is stored as a draft of its own, so the outbox still sends each draft at most once.
ALTER TABLE case_drafts DROP CONSTRAINT case_drafts_drafter_check;
ALTER TABLE case_drafts ADD CONSTRAINT case_drafts_drafter_check CHECK (drafter IN ('claude', 'extractive', 'reviewer'));
