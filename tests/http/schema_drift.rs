//! Schema drift: a SQLite and a PostgreSQL database migrated from scratch must describe the
//! same schema, not just the same migration names. Both catalogues are read and reduced to
//! one normalised description per table:
//!
//! - columns in order, each with a coarse type class (integer, text, bytes, timestamp, bool,
//!   real) and its nullability;
//! - the primary key;
//! - unique constraints and unique indexes, by column list (their names are generated
//!   differently on each side);
//! - plain indexes, by name and column list (expressions normalised);
//! - foreign keys, with the referenced table and columns and the `ON DELETE` action.
//!
//! Two rules make the databases comparable: SQLite keeps timestamps as TEXT (sqlx writes
//! `DateTime<Utc>` as RFC 3339 text), so a SQLite text column matches a PostgreSQL timestamp;
//! and SQLite lets a primary key column hold NULL unless told otherwise while PostgreSQL
//! never does, so primary key columns count as NOT NULL on both.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use sqlx::{PgPool, SqlitePool};
use terrace::infra::db::Db;

/// One table as both databases can describe it.
#[derive(Debug, Default)]
struct Table {
    /// In column order.
    columns: Vec<Column>,
    primary_key: Vec<String>,
    unique: BTreeSet<Vec<String>>,
    /// Non-unique indexes: name and key columns (or expressions).
    indexes: BTreeSet<(String, Vec<String>)>,
    foreign_keys: BTreeSet<ForeignKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    class: String,
    nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ForeignKey {
    columns: Vec<String>,
    table: String,
    references: Vec<String>,
    on_delete: String,
}

type Schema = BTreeMap<String, Table>;

#[tokio::test]
async fn sqlite_and_postgres_migrate_to_the_same_schema() {
    let Some((sqlite, postgres, _dir)) = databases().await else {
        eprintln!("skipping: TERRACE_TEST_POSTGRES_URL is not set");
        return;
    };
    let (sqlite, postgres) = (
        describe_sqlite(&sqlite).await,
        describe_postgres(&postgres).await,
    );
    // Sanity: a catalogue query that found nothing would make the schemas "match".
    for schema in [&sqlite, &postgres] {
        assert!(schema.contains_key("state_locks"), "{schema:#?}");
        assert!(schema.contains_key("jobs"), "{schema:#?}");
    }
    let report = drift(sqlite, postgres);
    assert!(
        report.is_empty(),
        "SQLite and PostgreSQL schemas differ:\n{report}"
    );
}

/// The comparison itself must see drift: a nullability change, an extra index and an extra
/// column on one side each show up in the report.
#[tokio::test]
async fn drift_between_the_schemas_is_reported() {
    let Some((sqlite, postgres, _dir)) = databases().await else {
        eprintln!("skipping: TERRACE_TEST_POSTGRES_URL is not set");
        return;
    };
    for sql in [
        "ALTER TABLE teams ALTER COLUMN role SET NOT NULL",
        "ALTER TABLE orgs ADD COLUMN note TEXT",
    ] {
        sqlx::query(sql).execute(&postgres).await.unwrap();
    }
    sqlx::query("CREATE INDEX orgs_created ON orgs (created_at)")
        .execute(&sqlite)
        .await
        .unwrap();
    let report = drift(
        describe_sqlite(&sqlite).await,
        describe_postgres(&postgres).await,
    );
    for expected in [
        "- sqlite:   column role text null",
        "+ postgres: column role text not null",
        "+ postgres: column note text null",
        "- sqlite:   index orgs_created (created_at)",
    ] {
        assert!(report.contains(expected), "{expected:?} not in:\n{report}");
    }
}

/// Migration 0008 rebuilds SQLite's `state_locks` to make `renewed_at` NOT NULL: a lock taken
/// before it keeps its row (one whose `renewed_at` was still NULL gets its `created_at`), the
/// column then refuses NULL, and the rebuilt table still goes with its workspace.
#[tokio::test]
async fn sqlite_locks_survive_the_state_locks_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}/test.db", dir.path().display()))
        .await
        .unwrap();
    let Db::Sqlite(pool) = &db else {
        unreachable!("a sqlite:// URL")
    };
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let migrator = sqlx::migrate::Migrator::new(migrations).await.unwrap();
    migrator.run_to(7, pool).await.unwrap();
    for sql in [
        "INSERT INTO orgs (id, name, created_at) VALUES (1, 'acme', '2026-01-01T00:00:00Z')",
        "INSERT INTO workspaces (id, org_id, name, created_at, updated_at) VALUES \
         (1, 1, 'prod', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'), \
         (2, 1, 'dev', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
        "INSERT INTO state_locks (workspace_id, lock_id, info, created_at, created_by, renewed_at) \
         VALUES (1, 'never-renewed', X'7B7D', '2026-01-02T00:00:00Z', 'alice', NULL), \
         (2, 'renewed', X'7B7D', '2026-01-02T00:00:00Z', 'bob', '2026-01-03T00:00:00Z')",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }

    // The migrations built into Terrace, as a server upgrading this database applies them.
    db.migrate().await.unwrap();

    let locks: Vec<(i64, String, Vec<u8>, String, String, String)> = sqlx::query_as(
        "SELECT workspace_id, lock_id, info, created_at, created_by, renewed_at \
         FROM state_locks ORDER BY workspace_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let expected = [
        (
            1,
            "never-renewed",
            "2026-01-02T00:00:00Z",
            "alice",
            "2026-01-02T00:00:00Z",
        ),
        (
            2,
            "renewed",
            "2026-01-02T00:00:00Z",
            "bob",
            "2026-01-03T00:00:00Z",
        ),
    ]
    .map(|(id, lock, created, by, renewed)| {
        (
            id,
            lock.into(),
            b"{}".to_vec(),
            created.into(),
            by.into(),
            renewed.into(),
        )
    });
    assert_eq!(locks, expected);
    let null = sqlx::query("UPDATE state_locks SET renewed_at = NULL WHERE workspace_id = 2")
        .execute(pool)
        .await;
    assert!(null.is_err(), "renewed_at accepted NULL");
    sqlx::query("DELETE FROM workspaces WHERE id = 1")
        .execute(pool)
        .await
        .unwrap();
    let left: Vec<(i64,)> = sqlx::query_as("SELECT workspace_id FROM state_locks")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(left, [(2,)]);
}

/// A migrated SQLite database (kept while the directory lives) and a migrated PostgreSQL
/// schema of its own; `None` when no PostgreSQL is configured (a failure under `CI`).
async fn databases() -> Option<(SqlitePool, PgPool, tempfile::TempDir)> {
    let (sqlite, dir) = terrace::infra::db::testing::sqlite().await;
    let postgres = terrace::infra::db::testing::postgres().await?;
    let (Db::Sqlite(sqlite), Db::Postgres(postgres)) = (sqlite, postgres) else {
        unreachable!("testing::sqlite() and testing::postgres() return their own kinds")
    };
    Some((sqlite, postgres, dir))
}

/// Lines that differ between the two descriptions, table by table; empty when none do.
fn drift(mut sqlite: Schema, postgres: Schema) -> String {
    // SQLite keeps timestamps as text.
    for (name, table) in &mut sqlite {
        let Some(other) = postgres.get(name) else {
            continue;
        };
        for column in &mut table.columns {
            let theirs = other.columns.iter().find(|c| c.name == column.name);
            if column.class == "text" && theirs.is_some_and(|c| c.class == "timestamp") {
                column.class = "timestamp".into();
            }
        }
    }
    let names: BTreeSet<&String> = sqlite.keys().chain(postgres.keys()).collect();
    let mut report = String::new();
    for name in names {
        let (ours, theirs) = match (sqlite.get(name), postgres.get(name)) {
            (Some(ours), Some(theirs)) => (lines(ours), lines(theirs)),
            (Some(_), None) => {
                writeln!(report, "table {name}: only in SQLite").unwrap();
                continue;
            }
            (None, Some(_)) => {
                writeln!(report, "table {name}: only in PostgreSQL").unwrap();
                continue;
            }
            (None, None) => unreachable!(),
        };
        if ours == theirs {
            continue;
        }
        writeln!(report, "table {name}:").unwrap();
        let only_sqlite: Vec<&String> = ours.iter().filter(|l| !theirs.contains(l)).collect();
        let only_postgres: Vec<&String> = theirs.iter().filter(|l| !ours.contains(l)).collect();
        for line in &only_sqlite {
            writeln!(report, "  - sqlite:   {line}").unwrap();
        }
        for line in &only_postgres {
            writeln!(report, "  + postgres: {line}").unwrap();
        }
        if only_sqlite.is_empty() && only_postgres.is_empty() {
            writeln!(report, "  the columns are in a different order").unwrap();
            writeln!(report, "  - sqlite:   {}", ours.join(" | ")).unwrap();
            writeln!(report, "  + postgres: {}", theirs.join(" | ")).unwrap();
        }
    }
    report
}

/// The description of one table, one fact per line.
fn lines(table: &Table) -> Vec<String> {
    let mut lines: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let null = if c.nullable { "null" } else { "not null" };
            format!("column {} {} {null}", c.name, c.class)
        })
        .collect();
    lines.push(format!("primary key ({})", table.primary_key.join(", ")));
    lines.extend(
        table
            .unique
            .iter()
            .map(|columns| format!("unique ({})", columns.join(", "))),
    );
    lines.extend(
        table
            .indexes
            .iter()
            .map(|(name, columns)| format!("index {name} ({})", columns.join(", "))),
    );
    lines.extend(table.foreign_keys.iter().map(|fk| {
        format!(
            "foreign key ({}) references {} ({}) on delete {}",
            fk.columns.join(", "),
            fk.table,
            fk.references.join(", "),
            fk.on_delete
        )
    }));
    lines
}

/// The coarse class of a SQLite declared type, by SQLite's own affinity rules, with booleans
/// and timestamps told apart by name.
fn sqlite_class(declared: &str) -> String {
    let declared = declared.to_ascii_uppercase();
    let class = if declared.contains("BOOL") {
        "bool"
    } else if declared.contains("INT") {
        "integer"
    } else if declared.contains("TIMESTAMP") || declared.contains("DATE") {
        "timestamp"
    } else if ["CHAR", "CLOB", "TEXT"]
        .iter()
        .any(|t| declared.contains(t))
    {
        "text"
    } else if declared.is_empty() || declared.contains("BLOB") {
        "bytes"
    } else if ["REAL", "FLOA", "DOUB"]
        .iter()
        .any(|t| declared.contains(t))
    {
        "real"
    } else {
        return format!("other({declared})");
    };
    class.into()
}

/// The coarse class of a PostgreSQL `information_schema.columns.data_type`.
fn postgres_class(data_type: &str) -> String {
    let class = match data_type {
        "smallint" | "integer" | "bigint" => "integer",
        "text" | "character varying" | "character" => "text",
        "bytea" => "bytes",
        "boolean" => "bool",
        "real" | "double precision" => "real",
        "timestamp with time zone" | "timestamp without time zone" | "date" => "timestamp",
        other => return format!("other({other})"),
    };
    class.into()
}

/// An index key as both databases print it: `COALESCE(team_id, 0)` on SQLite and
/// `COALESCE(team_id, 0::bigint)` on PostgreSQL both become `coalesce(team_id,0)`.
fn normalise_key(key: &str) -> String {
    let compact: String = key
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '"')
        .flat_map(char::to_lowercase)
        .collect();
    // Drops casts: `::` and the type name after it.
    let mut out = String::new();
    let mut rest = compact.as_str();
    while let Some(at) = rest.find("::") {
        out.push_str(&rest[..at]);
        rest = rest[at + 2..].trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
    }
    out.push_str(rest);
    out
}

/// The key list of a `CREATE INDEX … ON table (k1, k2, …)` statement, split at top-level
/// commas.
fn index_keys(sql: &str) -> Vec<String> {
    let upper = sql.to_ascii_uppercase();
    let on = upper.find(" ON ").expect("CREATE INDEX … ON");
    let open = on + sql[on..].find('(').expect("a key list");
    let mut keys = Vec::new();
    let (mut depth, mut current) = (0, String::new());
    for c in sql[open + 1..].chars() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => break,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                keys.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    keys.push(current);
    keys
}

async fn describe_sqlite(pool: &SqlitePool) -> Schema {
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for (name,) in tables {
        let mut table = Table::default();

        let columns: Vec<(String, String, bool, i64)> = sqlx::query_as(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info($1) ORDER BY cid",
        )
        .bind(&name)
        .fetch_all(pool)
        .await
        .unwrap();
        let mut primary_key: Vec<(i64, String)> = Vec::new();
        for (column, declared, not_null, pk) in columns {
            if pk > 0 {
                primary_key.push((pk, column.clone()));
            }
            table.columns.push(Column {
                class: sqlite_class(&declared),
                nullable: !not_null && pk == 0,
                name: column,
            });
        }
        primary_key.sort();
        table.primary_key = primary_key.into_iter().map(|(_, c)| c).collect();

        let indexes: Vec<(String, bool, String, bool)> =
            sqlx::query_as("SELECT name, \"unique\", origin, partial FROM pragma_index_list($1)")
                .bind(&name)
                .fetch_all(pool)
                .await
                .unwrap();
        for (index, unique, origin, partial) in indexes {
            // The primary key is described above.
            if origin == "pk" {
                continue;
            }
            let keys: Vec<(i64, Option<String>)> =
                sqlx::query_as("SELECT cid, name FROM pragma_index_info($1) ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(pool)
                    .await
                    .unwrap();
            let sql: Option<(Option<String>,)> =
                sqlx::query_as("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = $1")
                    .bind(&index)
                    .fetch_optional(pool)
                    .await
                    .unwrap();
            let expressions = sql.and_then(|(sql,)| sql).map(|sql| index_keys(&sql));
            let mut columns: Vec<String> = keys
                .into_iter()
                .enumerate()
                .map(|(at, (_, column))| match column {
                    Some(column) => column,
                    None => expressions.as_ref().expect("an expression index has SQL")[at].clone(),
                })
                .map(|key| normalise_key(&key))
                .collect();
            if partial {
                columns.push("partial".into());
            }
            if unique {
                table.unique.insert(columns);
            } else {
                table.indexes.insert((index, columns));
            }
        }

        let foreign_keys: Vec<(i64, String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT id, \"table\", \"from\", \"to\", on_delete FROM pragma_foreign_key_list($1) \
             ORDER BY id, seq",
        )
        .bind(&name)
        .fetch_all(pool)
        .await
        .unwrap();
        let mut by_id: BTreeMap<i64, ForeignKey> = BTreeMap::new();
        for (id, parent, from, to, on_delete) in foreign_keys {
            let fk = by_id.entry(id).or_insert_with(|| ForeignKey {
                columns: Vec::new(),
                table: parent,
                references: Vec::new(),
                on_delete: on_delete.to_ascii_lowercase(),
            });
            fk.columns.push(from);
            fk.references
                .push(to.expect("foreign keys name their parent columns"));
        }
        table.foreign_keys = by_id.into_values().collect();

        schema.insert(name, table);
    }
    schema
}

async fn describe_postgres(pool: &PgPool) -> Schema {
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
         AND table_name <> '_sqlx_migrations' ORDER BY table_name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for (name,) in tables {
        let mut table = Table::default();

        let columns: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text, is_nullable = 'YES' \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 \
             ORDER BY ordinal_position",
        )
        .bind(&name)
        .fetch_all(pool)
        .await
        .unwrap();
        table.columns = columns
            .into_iter()
            .map(|(name, data_type, nullable)| Column {
                name,
                class: postgres_class(&data_type),
                nullable,
            })
            .collect();

        let indexes: Vec<(String, bool, bool, bool, Vec<String>)> = sqlx::query_as(
            "SELECT c.relname::text, i.indisprimary, i.indisunique, i.indpred IS NOT NULL, \
                 ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) \
                       FROM generate_series(1, i.indnkeyatts::int) AS k ORDER BY k) \
             FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_class t ON t.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = current_schema() AND t.relname = $1",
        )
        .bind(&name)
        .fetch_all(pool)
        .await
        .unwrap();
        for (index, primary, unique, partial, keys) in indexes {
            let mut columns: Vec<String> = keys.iter().map(|k| normalise_key(k)).collect();
            if primary {
                table.primary_key = columns;
                continue;
            }
            if partial {
                columns.push("partial".into());
            }
            if unique {
                table.unique.insert(columns);
            } else {
                table.indexes.insert((index, columns));
            }
        }

        let foreign_keys: Vec<(Vec<String>, String, Vec<String>, String)> = sqlx::query_as(
            "SELECT \
                 ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(n, o) \
                       JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n \
                       ORDER BY k.o), \
                 p.relname::text, \
                 ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(n, o) \
                       JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n \
                       ORDER BY k.o), \
                 CASE con.confdeltype WHEN 'c' THEN 'cascade' WHEN 'n' THEN 'set null' \
                      WHEN 'd' THEN 'set default' WHEN 'r' THEN 'restrict' \
                      ELSE 'no action' END \
             FROM pg_constraint con \
             JOIN pg_class t ON t.oid = con.conrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             JOIN pg_class p ON p.oid = con.confrelid \
             WHERE con.contype = 'f' AND n.nspname = current_schema() AND t.relname = $1",
        )
        .bind(&name)
        .fetch_all(pool)
        .await
        .unwrap();
        table.foreign_keys = foreign_keys
            .into_iter()
            .map(|(columns, table, references, on_delete)| ForeignKey {
                columns,
                table,
                references,
                on_delete,
            })
            .collect();

        schema.insert(name, table);
    }
    schema
}
