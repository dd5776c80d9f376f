//! The tables a backup copies, read from the database's own catalogue: columns in order with
//! their dump encoding, primary keys for a stable dump order, and foreign keys for an insert
//! order. Nothing here lists tables by hand, so a migration that adds a table or column is
//! backed up without a change here; a column type this module cannot map is refused, never
//! guessed at.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, ensure};

use crate::infra::db::Db;

/// The migrations' own bookkeeping: it belongs to the target's `migrate`, not to the data.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// How a column's values are read, written to the dump and bound back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A 64-bit integer (SQLite INTEGER of any width, PostgreSQL BIGINT), a JSON number.
    Int64,
    /// PostgreSQL INTEGER, a JSON number.
    Int32,
    /// PostgreSQL DOUBLE PRECISION, SQLite REAL, a JSON number.
    Real,
    Bool,
    Text,
    /// JSON held as text in the dump (PostgreSQL JSON/JSONB are cast to and from TEXT).
    Json,
    /// Base64 in the dump.
    Bytes,
    /// A point in time, RFC 3339 in the dump. SQLite declares times as TEXT, so its times are
    /// `Text` and copied as the text they are.
    Time,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    /// The PostgreSQL type a JSON column is cast to on insert.
    cast: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    /// The primary key's columns, in key order.
    key: Vec<String>,
    /// Columns a PostgreSQL sequence numbers, which restore moves past the restored values.
    pub sequenced: Vec<String>,
    /// The other tables this one's foreign keys reference.
    references: BTreeSet<String>,
}

impl Table {
    /// Every row, in primary key order (every column for a table without one), so that two
    /// dumps of the same data are the same files.
    pub fn select_sql(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| match c.cast {
                Some(_) => format!("CAST(\"{0}\" AS TEXT) AS \"{0}\"", c.name),
                None => format!("\"{}\"", c.name),
            })
            .collect();
        let order: Vec<String> = if self.key.is_empty() {
            self.columns.iter().map(|c| quote(&c.name)).collect()
        } else {
            self.key.iter().map(|c| quote(c)).collect()
        };
        format!(
            "SELECT {} FROM {} ORDER BY {}",
            columns.join(", "),
            quote(&self.name),
            order.join(", ")
        )
    }

    /// An insert of one row, its parameters in column order.
    pub fn insert_sql(&self) -> String {
        let columns: Vec<String> = self.columns.iter().map(|c| quote(&c.name)).collect();
        let params: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| match &c.cast {
                Some(cast) => format!("CAST(${} AS {cast})", i + 1),
                None => format!("${}", i + 1),
            })
            .collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(&self.name),
            columns.join(", "),
            params.join(", ")
        )
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Names come from the catalogue and are checked by [`plain`]; quoting keeps keywords
/// (`source`, `version` …) usable as column names on both databases.
pub fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// The tables of a database, in an order that satisfies foreign keys on insert.
#[derive(Debug)]
pub struct Schema {
    pub tables: Vec<Table>,
}

impl Schema {
    /// Reads the catalogue. Refuses names that cannot be file names and SQL identifiers
    /// as they are, column types it cannot map, and foreign keys that form a cycle.
    pub async fn read(db: &Db) -> anyhow::Result<Schema> {
        let tables = match db {
            Db::Sqlite(pool) => read_sqlite(pool).await?,
            Db::Postgres(pool) => read_postgres(pool).await?,
        };
        Ok(Schema {
            tables: insert_order(tables)?,
        })
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// The latest applied migration.
pub async fn schema_version(db: &Db) -> anyhow::Result<i64> {
    const SQL: &str = "SELECT MAX(version) FROM _sqlx_migrations";
    let version = crate::infra::db::on_pool!(db, p => sqlx::query_scalar::<_, Option<i64>>(SQL)
        .fetch_one(p).await)?;
    Ok(version.unwrap_or(0))
}

async fn read_sqlite(pool: &sqlx::SqlitePool) -> anyhow::Result<Vec<Table>> {
    const TABLES: &str = "SELECT name FROM sqlite_master WHERE type = 'table' \
        AND substr(name, 1, 7) <> 'sqlite_' AND name <> $1 ORDER BY name";
    const COLUMNS: &str = "SELECT name, type, pk FROM pragma_table_info($1) ORDER BY cid";
    const REFERENCES: &str = "SELECT DISTINCT \"table\" FROM pragma_foreign_key_list($1)";
    let names: Vec<String> = sqlx::query_scalar(TABLES)
        .bind(MIGRATIONS_TABLE)
        .fetch_all(pool)
        .await?;
    let mut tables = Vec::new();
    for name in names {
        let mut table = new_table(name)?;
        let columns: Vec<(String, String, i64)> = sqlx::query_as(COLUMNS)
            .bind(&table.name)
            .fetch_all(pool)
            .await?;
        let mut key = Vec::new();
        for (column, declared, pk) in columns {
            let kind = sqlite_kind(&declared);
            table
                .columns
                .push(new_column(&table.name, column, &declared, kind, None)?);
            if pk > 0 {
                key.push((pk, table.columns.len() - 1));
            }
        }
        key.sort();
        table.key = key
            .into_iter()
            .map(|(_, i)| table.columns[i].name.clone())
            .collect();
        table.references = sqlx::query_scalar(REFERENCES)
            .bind(&table.name)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
        tables.push(table);
    }
    Ok(tables)
}

async fn read_postgres(pool: &sqlx::PgPool) -> anyhow::Result<Vec<Table>> {
    const COLUMNS: &str = "SELECT CAST(c.table_name AS TEXT), CAST(c.column_name AS TEXT), \
        CAST(c.data_type AS TEXT), \
        c.is_identity = 'YES' OR COALESCE(c.column_default LIKE 'nextval(%', FALSE) \
        FROM information_schema.columns c JOIN information_schema.tables t \
        ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
        WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
        AND c.table_name <> $1 ORDER BY c.table_name, c.ordinal_position";
    const KEYS: &str = "SELECT CAST(k.table_name AS TEXT), CAST(k.column_name AS TEXT) \
        FROM information_schema.table_constraints c \
        JOIN information_schema.key_column_usage k ON k.constraint_schema = c.constraint_schema \
        AND k.constraint_name = c.constraint_name AND k.table_name = c.table_name \
        WHERE c.table_schema = current_schema() AND c.constraint_type = 'PRIMARY KEY' \
        ORDER BY k.table_name, k.ordinal_position";
    // pg_constraint rather than information_schema: constraint names are unique per table,
    // not per schema, which the information_schema views cannot tell apart.
    const REFERENCES: &str = "SELECT DISTINCT CAST(s.relname AS TEXT), CAST(d.relname AS TEXT) \
        FROM pg_constraint f JOIN pg_class s ON s.oid = f.conrelid \
        JOIN pg_class d ON d.oid = f.confrelid JOIN pg_namespace n ON n.oid = s.relnamespace \
        WHERE f.contype = 'f' AND n.nspname = current_schema()";
    let columns: Vec<(String, String, String, bool)> = sqlx::query_as(COLUMNS)
        .bind(MIGRATIONS_TABLE)
        .fetch_all(pool)
        .await?;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    for (table_name, column, data_type, sequenced) in columns {
        let table = match tables.entry(table_name) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let table = new_table(e.key().clone())?;
                e.insert(table)
            }
        };
        let kind = postgres_kind(&data_type);
        let cast = (kind == Some(Kind::Json)).then(|| data_type.clone());
        let column = new_column(&table.name, column, &data_type, kind, cast)?;
        if sequenced {
            table.sequenced.push(column.name.clone());
        }
        table.columns.push(column);
    }
    let keys: Vec<(String, String)> = sqlx::query_as(KEYS).fetch_all(pool).await?;
    for (table, column) in keys {
        if let Some(table) = tables.get_mut(&table) {
            table.key.push(column);
        }
    }
    let references: Vec<(String, String)> = sqlx::query_as(REFERENCES).fetch_all(pool).await?;
    for (from, to) in references {
        if let Some(table) = tables.get_mut(&from) {
            table.references.insert(to);
        }
    }
    Ok(tables.into_values().collect())
}

fn new_table(name: String) -> anyhow::Result<Table> {
    ensure!(
        plain(&name),
        "table {name:?} cannot be backed up: its name is not a plain lowercase identifier"
    );
    Ok(Table {
        name,
        columns: Vec::new(),
        key: Vec::new(),
        sequenced: Vec::new(),
        references: BTreeSet::new(),
    })
}

fn new_column(
    table: &str,
    name: String,
    declared: &str,
    kind: Option<Kind>,
    cast: Option<String>,
) -> anyhow::Result<Column> {
    ensure!(
        plain(&name),
        "column {table}.{name:?} cannot be backed up: its name is not a plain lowercase \
         identifier"
    );
    let Some(kind) = kind else {
        bail!("column {table}.{name} has type {declared:?}, which backups do not know how to copy")
    };
    Ok(Column { name, kind, cast })
}

/// A name safe as a file name (`metadata/<table>.jsonl`) and, quoted, as an identifier.
fn plain(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A SQLite declared type, read by SQLite's own affinity rules where they are unambiguous.
/// NUMERIC affinity (NUMERIC, DECIMAL, DATE …) and no declared type at all store values of
/// any kind, so they are refused.
fn sqlite_kind(declared: &str) -> Option<Kind> {
    let upper = declared.to_ascii_uppercase();
    // `VARCHAR(255)` and the like: the size changes nothing.
    let base = upper.split('(').next().unwrap_or_default().trim();
    match base {
        "BOOLEAN" | "BOOL" => Some(Kind::Bool),
        "TIMESTAMP" | "TIMESTAMPTZ" | "DATETIME" => Some(Kind::Time),
        "JSON" | "JSONB" => Some(Kind::Json),
        "BLOB" => Some(Kind::Bytes),
        _ if base.contains("INT") => Some(Kind::Int64),
        _ if ["CHAR", "CLOB", "TEXT"].iter().any(|t| base.contains(t)) => Some(Kind::Text),
        _ if ["REAL", "FLOA", "DOUB"].iter().any(|t| base.contains(t)) => Some(Kind::Real),
        _ => None,
    }
}

/// A PostgreSQL type as `information_schema.columns.data_type` names it.
fn postgres_kind(data_type: &str) -> Option<Kind> {
    match data_type {
        "bigint" => Some(Kind::Int64),
        "integer" => Some(Kind::Int32),
        "double precision" => Some(Kind::Real),
        "boolean" => Some(Kind::Bool),
        "text" | "character varying" | "character" => Some(Kind::Text),
        "json" | "jsonb" => Some(Kind::Json),
        "bytea" => Some(Kind::Bytes),
        "timestamp with time zone" => Some(Kind::Time),
        _ => None,
    }
}

/// Orders tables so that every table comes after the tables it references (ties by name, so
/// the order is the same on every database with the same schema). A reference to the table
/// itself does not constrain the order; a cycle between tables is refused, as no order of
/// inserts satisfies it.
fn insert_order(tables: Vec<Table>) -> anyhow::Result<Vec<Table>> {
    let names: BTreeSet<String> = tables.iter().map(|t| t.name.clone()).collect();
    let mut waiting: BTreeMap<String, (Table, BTreeSet<String>)> = tables
        .into_iter()
        .map(|t| {
            let needs = t
                .references
                .iter()
                .filter(|r| **r != t.name && names.contains(*r))
                .cloned()
                .collect();
            (t.name.clone(), (t, needs))
        })
        .collect();
    let mut ordered = Vec::new();
    while !waiting.is_empty() {
        let Some(next) = waiting
            .iter()
            .find(|(_, (_, needs))| needs.is_empty())
            .map(|(name, _)| name.clone())
        else {
            let stuck: Vec<&str> = waiting.keys().map(String::as_str).collect();
            bail!(
                "the foreign keys among tables {} form a cycle; backups cannot order their rows",
                stuck.join(", ")
            );
        };
        if let Some((table, _)) = waiting.remove(&next) {
            ordered.push(table);
        }
        for (_, needs) in waiting.values_mut() {
            needs.remove(&next);
        }
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, references: &[&str]) -> Table {
        let mut table = new_table(name.into()).unwrap();
        table.references = references.iter().map(|r| r.to_string()).collect();
        table
    }

    fn names(tables: &[Table]) -> Vec<&str> {
        tables.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn referenced_tables_come_first_and_cycles_are_refused() {
        let ordered = insert_order(vec![
            table("a_child", &["parent", "z_other"]),
            table("parent", &["parent"]),
            table("z_other", &[]),
            table("grandchild", &["a_child", "gone"]),
        ])
        .unwrap();
        assert_eq!(
            names(&ordered),
            ["parent", "z_other", "a_child", "grandchild"]
        );
        let cycle = insert_order(vec![
            table("a", &["b"]),
            table("b", &["a"]),
            table("c", &[]),
        ]);
        let message = format!("{:#}", cycle.unwrap_err());
        assert!(message.contains("a, b"), "{message}");
    }

    #[test]
    fn declared_types_map_or_are_refused() {
        for (declared, kind) in [
            ("INTEGER", Some(Kind::Int64)),
            ("bigint", Some(Kind::Int64)),
            ("TEXT", Some(Kind::Text)),
            ("VARCHAR(64)", Some(Kind::Text)),
            ("BLOB", Some(Kind::Bytes)),
            ("BOOLEAN", Some(Kind::Bool)),
            ("DATETIME", Some(Kind::Time)),
            ("REAL", Some(Kind::Real)),
            ("JSON", Some(Kind::Json)),
            ("", None),
            ("NUMERIC", None),
            ("DATE", None),
        ] {
            assert_eq!(sqlite_kind(declared), kind, "{declared:?}");
        }
        for (data_type, kind) in [
            ("bigint", Some(Kind::Int64)),
            ("integer", Some(Kind::Int32)),
            ("timestamp with time zone", Some(Kind::Time)),
            ("bytea", Some(Kind::Bytes)),
            ("jsonb", Some(Kind::Json)),
            ("timestamp without time zone", None),
            ("numeric", None),
            ("USER-DEFINED", None),
        ] {
            assert_eq!(postgres_kind(data_type), kind, "{data_type:?}");
        }
        let refused = new_column("t", "c".into(), "NUMERIC", None, None).unwrap_err();
        assert!(format!("{refused}").contains("t.c"), "{refused}");
        assert!(new_table("Mixed".into()).is_err());
        assert!(new_table("../x".into()).is_err());
    }

    #[test]
    fn statements_quote_names_and_cast_json() {
        let mut t = table("events", &[]);
        for (name, kind, cast) in [
            ("id", Kind::Int64, None),
            ("source", Kind::Text, None),
            ("body", Kind::Json, Some("jsonb".to_string())),
        ] {
            t.columns.push(Column {
                name: name.into(),
                kind,
                cast,
            });
        }
        t.key = vec!["id".into()];
        assert_eq!(
            t.select_sql(),
            "SELECT \"id\", \"source\", CAST(\"body\" AS TEXT) AS \"body\" FROM \"events\" \
             ORDER BY \"id\""
        );
        assert_eq!(
            t.insert_sql(),
            "INSERT INTO \"events\" (\"id\", \"source\", \"body\") VALUES ($1, $2, CAST($3 AS jsonb))"
        );
    }

    /// Every table of the live schema maps, and is ordered after the tables it references.
    async fn the_schema_maps(db: &Db) {
        let schema = Schema::read(db).await.unwrap();
        let names = names(&schema.tables);
        assert!(
            names.contains(&"blobs") && names.contains(&"orgs"),
            "{names:?}"
        );
        assert!(!names.contains(&MIGRATIONS_TABLE), "{names:?}");
        for (i, table) in schema.tables.iter().enumerate() {
            assert!(!table.key.is_empty(), "{} has no primary key", table.name);
            for reference in &table.references {
                let at = names.iter().position(|n| *n == reference.as_str()).unwrap();
                assert!(at <= i, "{} before {reference}", table.name);
            }
        }
        let state_versions = schema.table("state_versions").unwrap();
        assert_eq!(state_versions.columns[0].name, "id");
        assert!(state_versions.references.contains("blobs"));
    }

    #[tokio::test]
    async fn the_sqlite_schema_maps() {
        let (db, _dir) = crate::infra::db::testing::sqlite().await;
        the_schema_maps(&db).await;
        let schema = Schema::read(&db).await.unwrap();
        let blobs = schema.table("blobs").unwrap();
        assert_eq!(blobs.column("wrapped_key").unwrap().kind, Kind::Bytes);
        // SQLite declares times as TEXT: they are copied as the text they are.
        assert_eq!(blobs.column("created_at").unwrap().kind, Kind::Text);
        assert!(schema.tables.iter().all(|t| t.sequenced.is_empty()));
    }

    #[tokio::test]
    async fn the_postgres_schema_maps() {
        let Some(db) = crate::infra::db::testing::postgres().await else {
            return;
        };
        the_schema_maps(&db).await;
        let schema = Schema::read(&db).await.unwrap();
        let blobs = schema.table("blobs").unwrap();
        assert_eq!(blobs.column("created_at").unwrap().kind, Kind::Time);
        assert!(blobs.sequenced.is_empty());
        assert_eq!(schema.table("orgs").unwrap().sequenced, ["id"]);
        let audit = schema.table("audit_events").unwrap();
        assert_eq!(audit.column("status").unwrap().kind, Kind::Int32);
    }
}
