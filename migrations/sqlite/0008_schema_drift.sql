-- Brings the SQLite schema in line with PostgreSQL where the two had drifted apart.

-- `state_locks.renewed_at` is NOT NULL, as on PostgreSQL (0006 made it so there): every lock
-- is written with it, and lease checks read it as a time, never as NULL. SQLite cannot
-- alter a column, so the table is rebuilt with the same columns in the same order. Nothing
-- references `state_locks`, and it has no index or trigger besides its primary key.
CREATE TABLE state_locks_rebuilt (
    workspace_id  INTEGER PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    lock_id       TEXT NOT NULL,
    info          BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    renewed_at    TEXT NOT NULL
);
INSERT INTO state_locks_rebuilt (workspace_id, lock_id, info, created_at, created_by, renewed_at)
SELECT workspace_id, lock_id, info, created_at, created_by, COALESCE(renewed_at, created_at)
FROM state_locks;
DROP TABLE state_locks;
ALTER TABLE state_locks_rebuilt RENAME TO state_locks;
