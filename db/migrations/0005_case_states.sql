-- The case state machine (spec section 2). The allowed moves are data, and a trigger refuses
-- every other change of cases.status, whoever issues the UPDATE; db/cases.py is the only
-- writer and records each move in case_interactions with its actor.
CREATE TABLE case_status_transitions (
    from_status text NOT NULL,
    to_status   text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);

INSERT INTO case_status_transitions (from_status, to_status) VALUES
    ('new', 'triaged'),
    ('new', 'human_owned'),
    ('triaged', 'drafting'),
    ('triaged', 'awaiting_review'),
    ('triaged', 'human_owned'),
    ('triaged', 'escalated'),
    ('drafting', 'awaiting_review'),
    ('drafting', 'sending'),
    ('drafting', 'human_owned'),
    ('drafting', 'escalated'),
    ('awaiting_review', 'sending'),
    ('awaiting_review', 'drafting'),
    ('awaiting_review', 'human_owned'),
    ('awaiting_review', 'escalated'),
    ('awaiting_review', 'closed'),
    ('sending', 'replied'),
    ('sending', 'awaiting_review'),
    ('replied', 'resolved'),
    ('replied', 'reopened'),
    ('replied', 'closed'),
    ('resolved', 'closed'),
    ('resolved', 'reopened'),
    ('closed', 'reopened'),
    ('human_owned', 'drafting'),
    ('human_owned', 'awaiting_review'),
    ('human_owned', 'sending'),
    ('human_owned', 'replied'),
    ('human_owned', 'escalated'),
    ('human_owned', 'resolved'),
    ('human_owned', 'closed'),
    ('escalated', 'human_owned'),
    ('escalated', 'sending'),
    ('escalated', 'replied'),
    ('escalated', 'resolved'),
    ('escalated', 'closed'),
    ('reopened', 'triaged'),
    ('reopened', 'drafting'),
    ('reopened', 'awaiting_review'),
    ('reopened', 'human_owned'),
    ('reopened', 'escalated');

CREATE FUNCTION enforce_case_status_transition() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM case_status_transitions
        WHERE from_status = OLD.status AND to_status = NEW.status
    ) THEN
        RAISE EXCEPTION 'case % cannot move from % to %', OLD.case_id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'case_status_transition';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER cases_status_transition
    BEFORE UPDATE OF status ON cases
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION enforce_case_status_transition();

-- A case is born 'new'; anything else would skip the pipeline's first step.
CREATE FUNCTION enforce_case_initial_status() RETURNS trigger AS $$
BEGIN
    IF NEW.status <> 'new' THEN
        RAISE EXCEPTION 'a case starts as new, not %', NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'case_status_transition';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER cases_initial_status
    BEFORE INSERT ON cases
    FOR EACH ROW
    EXECUTE FUNCTION enforce_case_initial_status();
