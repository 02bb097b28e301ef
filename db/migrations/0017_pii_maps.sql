-- Each case's redaction map: placeholder ([CARD_1]) -> the customer's value. Kept apart from
-- `cases` so no case listing, export or log line carries it by accident; it goes with its case.
CREATE TABLE case_pii (
    case_id uuid PRIMARY KEY REFERENCES cases (case_id) ON DELETE CASCADE,
    map jsonb NOT NULL CHECK (jsonb_typeof(map) = 'object'),
    updated_at timestamptz NOT NULL DEFAULT now()
);
