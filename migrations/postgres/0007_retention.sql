-- Retention per workspace: keep the newest N versions and/or those younger than D days
-- (NULL: no limit of that kind; both NULL, the default: keep everything).
ALTER TABLE workspaces ADD COLUMN retain_versions BIGINT;
ALTER TABLE workspaces ADD COLUMN retain_days BIGINT;
