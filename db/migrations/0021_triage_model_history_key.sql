-- What a model was trained on, as one digest of the labelled history's content, the embedder and
-- the recipe (pipelines/triage/local/triager.py `history_key`): training an unchanged history
-- reuses the model instead of spending minutes on the same one. Null: trained before the key.
ALTER TABLE triage_models ADD COLUMN history_key text;

CREATE INDEX triage_models_history_key_idx ON triage_models (history_key) WHERE history_key IS NOT NULL;
