-- Lock leases: a lock not renewed (by a write or a re-LOCK with its ID) within the
-- workspace's lease is stale, and may be taken over when the workspace allows it.
ALTER TABLE state_locks ADD COLUMN renewed_at TEXT;
UPDATE state_locks SET renewed_at = created_at;

-- NULL: locks never go stale (the default, since Terraform 1.0.3 never renews a lock).
ALTER TABLE workspaces ADD COLUMN lock_lease_seconds BIGINT;
ALTER TABLE workspaces ADD COLUMN expire_stale_locks BOOLEAN NOT NULL DEFAULT FALSE;
