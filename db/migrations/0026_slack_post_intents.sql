-- A review card is recorded in slack_messages once Slack has answered the post. A process that dies
-- between the two would post the card again when its job is retried; the intent, committed before
-- the post, tells the retry to look in the channel first (the card carries the case id in its
-- message metadata), and since when.
CREATE TABLE slack_post_intents (
    case_id uuid NOT NULL REFERENCES cases (case_id) ON DELETE CASCADE,
    purpose text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, purpose)
);
