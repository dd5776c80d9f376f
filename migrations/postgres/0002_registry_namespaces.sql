-- Registry settings per namespace (a namespace is an org).
CREATE TABLE registry_namespaces (
    org_id          BIGINT PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
    public          BOOLEAN NOT NULL DEFAULT FALSE,
    server_signing  BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at      TIMESTAMPTZ NOT NULL
);
