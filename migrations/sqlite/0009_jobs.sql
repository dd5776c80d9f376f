-- The background-work home: lease rows for singleton periodic jobs, and the work queue's
-- lease holder and outcome.
CREATE TABLE job_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
ALTER TABLE jobs ADD COLUMN lease_holder TEXT;
ALTER TABLE jobs ADD COLUMN finished_at TEXT;
ALTER TABLE jobs ADD COLUMN last_error TEXT;
CREATE INDEX jobs_claimable ON jobs (kind, run_after) WHERE finished_at IS NULL;
