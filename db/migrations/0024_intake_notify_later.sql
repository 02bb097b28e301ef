-- pgqueuer's change trigger notifies its workers from inside the enqueuing transaction. PostgreSQL
-- serializes every notifying commit under one lock, held through the commit's WAL flush, so under
-- load the webhook intake committed one case at a time (measured: ~200 intakes/s on 10 connections
-- with the NOTIFY, ~670/s without). A transaction that sets cx.notify_later = 'on' (set_config
-- ..., true: that transaction only) skips it; webhook intake does, and wakes the workers itself
-- after its commit (db/intake.py wake_workers), one NOTIFY for many cases.
CREATE OR REPLACE TRIGGER tg_pgqueuer_changed
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgqueuer
FOR EACH STATEMENT
WHEN (current_setting('cx.notify_later', true) IS DISTINCT FROM 'on')
EXECUTE FUNCTION fn_pgqueuer_changed();
