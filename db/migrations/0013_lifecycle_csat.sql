-- Case lifecycle and CSAT (issue 12). cases.csat and cases.resolution_type exist since 0002; a
-- rating link may be clicked again to change the score, so the time of the latest rating is kept
-- (each rating also leaves a case_interactions row of type 'csat' with the score it replaced).
-- Imported history may carry a csat without a time, so the two are not tied by a constraint.
ALTER TABLE cases ADD COLUMN csat_at timestamptz;

-- No new status moves: a reviewer resolves from replied, human_owned or escalated, all allowed by
-- 0005. `reopened` lasts only inside the transaction that hands the case to a person, and a case
-- awaiting review is first taken or rejected (the reviewer owns it, and the review says why).
