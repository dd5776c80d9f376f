-- Notifications: an org's webhook subscriptions, the events raised for them, and the outbox of
-- deliveries (claimed with a lease, retried with backoff) with every attempt logged.
CREATE TABLE notifications (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id       BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    url          TEXT NOT NULL,
    -- JSON array of event kinds (or `run:*`-style patterns).
    events       TEXT NOT NULL,
    -- A workspace glob; NULL: every workspace (and events of no workspace).
    workspace    TEXT NULL,
    format       TEXT NOT NULL,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    -- The signing secret, encrypted like every blob.
    secret_blob  TEXT NOT NULL REFERENCES blobs(id),
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE notification_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id       BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    workspace    TEXT NULL,
    payload      TEXT NOT NULL,
    -- Set for events raised at most once (a stale lock, a budget threshold in a period).
    dedupe_key   TEXT NULL UNIQUE,
    created_at   TEXT NOT NULL
);

CREATE TABLE notification_deliveries (
    -- The Standard Webhooks message id (`webhook-id`), the same on every attempt.
    id              TEXT PRIMARY KEY,
    notification_id BIGINT NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    event_id        BIGINT NOT NULL REFERENCES notification_events(id) ON DELETE CASCADE,
    -- pending, delivered, failed
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    leased_until    TEXT NULL,
    lease_holder    TEXT NULL,
    last_status     BIGINT NULL,
    last_error      TEXT NULL,
    created_at      TEXT NOT NULL,
    finished_at     TEXT NULL
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE finished_at IS NULL;
CREATE INDEX notification_deliveries_listed ON notification_deliveries (notification_id, created_at);

CREATE TABLE notification_attempts (
    delivery_id     TEXT NOT NULL REFERENCES notification_deliveries(id) ON DELETE CASCADE,
    attempt         BIGINT NOT NULL,
    started_at      TEXT NOT NULL,
    duration_ms     BIGINT NOT NULL,
    status_code     BIGINT NULL,
    error           TEXT NULL,
    next_attempt_at TEXT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
