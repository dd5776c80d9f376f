-- Brings the SQLite schema in line with PostgreSQL where the two had drifted apart
-- (`state_locks.renewed_at` becomes NOT NULL there, as it is here since 0006). Nothing
-- changes on PostgreSQL.
SELECT 1;
