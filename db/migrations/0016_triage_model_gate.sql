-- The retraining gate: one model serves, the active one. A retrained candidate that
-- cross-validates worse than it is stored as rejected, for inspection, and never loaded.
ALTER TABLE triage_models
    ADD COLUMN status text NOT NULL DEFAULT 'retired' CHECK (status IN ('active', 'rejected', 'retired')),
    -- The candidate's cross-validated accuracy at its gated retrain; null for `cx triage train`.
    ADD COLUMN cv_accuracy double precision CHECK (cv_accuracy BETWEEN 0 AND 1);

-- Until now the newest model was the one in use: it stays in use.
UPDATE triage_models SET status = 'active'
WHERE model_id = (SELECT model_id FROM triage_models ORDER BY created_at DESC LIMIT 1);

-- Every insert says what it stores.
ALTER TABLE triage_models ALTER COLUMN status DROP DEFAULT;

-- Never two active models, whatever races or retries: a switch that would leave two fails.
CREATE UNIQUE INDEX triage_models_one_active ON triage_models ((true)) WHERE status = 'active';


-- One row per finished gated retrain: both figures, and whether the candidate replaced the model.
CREATE TABLE triage_retrains (
    retrain_id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    started_at         timestamptz NOT NULL,
    finished_at        timestamptz NOT NULL DEFAULT now(),
    examples           integer NOT NULL CHECK (examples >= 0),
    new_examples       integer NOT NULL CHECK (new_examples >= 0),  -- not in the model it was compared with
    folds              integer NOT NULL CHECK (folds >= 2),
    candidate_accuracy double precision NOT NULL CHECK (candidate_accuracy BETWEEN 0 AND 1),
    current_accuracy   double precision CHECK (current_accuracy BETWEEN 0 AND 1),  -- null: none usable
    kept               boolean NOT NULL,
    model_id           uuid REFERENCES triage_models ON DELETE SET NULL,  -- the candidate
    compared_with      uuid REFERENCES triage_models ON DELETE SET NULL
);

CREATE INDEX triage_retrains_finished_at_idx ON triage_retrains (finished_at DESC);
