-- Trained local triage models. The newest row is the one in use; workers load it when it
-- changes, so every replica classifies with the same model, wherever it runs.
CREATE TABLE triage_models (
    model_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind           text NOT NULL,
    embedding_model text,
    labels         text[] NOT NULL,
    n_examples     integer NOT NULL CHECK (n_examples >= 0),
    -- Examples created up to this instant are in the model; newer ones join through kNN at once.
    examples_until timestamptz NOT NULL,
    train_seconds  real NOT NULL,
    metrics        jsonb NOT NULL DEFAULT '{}',
    payload        bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX triage_models_created_at_idx ON triage_models (created_at DESC);
