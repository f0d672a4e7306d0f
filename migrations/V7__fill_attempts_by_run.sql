-- A run's attempts, read by the run page and `GET /api/runs/{id}` (which schedulers poll):
-- without an index each read scanned every attempt ever made.
CREATE INDEX fill_attempts_by_run ON fill_attempts (run_id);
