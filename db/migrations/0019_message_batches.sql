-- Bulk work as Anthropic Message Batches (daily article drafts, incident summaries that are not urgent).
--
-- A call waits in batch_requests (queued), goes out in a batch (sent), and its result is read back by
-- custom_id (the request's id): answered (the step runs again with the answer), queued again (an error
-- worth retrying: only the failed requests go into the next batch) or synchronous (its step runs with a
-- direct call: the batch timed out, expired, was canceled, or the request failed for good).
--
-- The reference's batch_jobs row is written before the provider is asked to create the batch, with no
-- provider id yet: a restart that finds such a row looks the batch up at the provider before sending
-- anything again, so a crash between the two never pays for a batch twice.

ALTER TABLE batch_jobs
    ALTER COLUMN batch_id DROP NOT NULL,
    ALTER COLUMN workflow_stage DROP NOT NULL,
    ALTER COLUMN parent_run_id DROP NOT NULL;

-- submitted_at is when the row was written; expires_at is our deadline (BATCH_TIMEOUT_MINUTES), after
-- which the batch is canceled and its requests run directly. completed_at: its results have been read
-- (a timed-out batch is still read when it ends, to record what it billed).
CREATE INDEX batch_jobs_open_idx ON batch_jobs (submitted_at) WHERE completed_at IS NULL;

CREATE TABLE batch_requests (
    request_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    step          text NOT NULL,
    subject_id    uuid NOT NULL,  -- what the step is about: a KB gap (improvement opportunity), an alert
    resume_job    text NOT NULL,  -- the job-queue entrypoint that runs the step again
    request       jsonb NOT NULL,  -- the call (pipelines.ports.LLMRequest)
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'sent', 'answered', 'synchronous')),
    batch_job_id  uuid REFERENCES batch_jobs ON DELETE SET NULL,
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    answer        jsonb,  -- the tool call's fields, validated by the step
    usage         jsonb,  -- pipelines.ports.LLMUsage, as recorded in llm_usage
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One waiting call per step and subject: a redelivered job does not queue a second.
CREATE UNIQUE INDEX batch_requests_waiting_idx ON batch_requests (step, subject_id)
    WHERE status IN ('queued', 'sent');
CREATE INDEX batch_requests_queued_idx ON batch_requests (created_at) WHERE status = 'queued';
CREATE INDEX batch_requests_batch_idx ON batch_requests (batch_job_id);
