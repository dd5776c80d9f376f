//! SQL for blueprints. Every statement runs on both databases; lists are ordered on the
//! `(org_id, name)` unique index.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::infra::db::{Db, on_pool};

/// One blueprint as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BlueprintRow {
    pub id: i64,
    pub name: String,
    pub module_name: String,
    pub module_system: String,
    /// Terraform constraint syntax; empty: any version.
    pub version_constraint: String,
    pub title: String,
    /// `None`: the README's first paragraph (`summary`).
    pub description: Option<String>,
    pub category: Option<String>,
    pub owner: Option<String>,
    /// JSON array of strings.
    pub tags: String,
    pub status: String,
    pub auto_apply: bool,
    /// JSON object: input name → override.
    pub overrides: String,
    /// The version `derived` was read from.
    pub module_version: String,
    /// JSON of `schema::Derived`; empty in list rows, which do not need it.
    pub derived: String,
    pub summary: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: String,
}

/// Everything a create or update writes.
#[derive(Debug)]
pub struct Fields<'a> {
    pub module_name: &'a str,
    pub module_system: &'a str,
    pub version_constraint: &'a str,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub category: Option<&'a str>,
    pub owner: Option<&'a str>,
    pub tags: &'a [String],
    pub status: &'a str,
    pub auto_apply: bool,
    pub overrides: &'a str,
    pub module_version: &'a str,
    pub derived: &'a str,
    pub summary: &'a str,
}

/// What a list narrows to.
#[derive(Debug, Default)]
pub struct ListFilter<'a> {
    pub org_id: i64,
    pub category: Option<&'a str>,
    pub tag: Option<&'a str>,
    pub status: Option<&'a str>,
    /// Drafts are listed for admins only.
    pub include_drafts: bool,
    /// A lowercase `LIKE` pattern matched against name, title and description.
    pub pattern: Option<&'a str>,
}

const COLUMNS: &str = "id, name, module_name, module_system, version_constraint, title, \
    description, category, owner, tags, status, auto_apply, overrides, module_version, derived, \
    summary, created_at, updated_at, created_by";

/// The columns of a list row: the derived JSON (schema, README) is left out.
const LIST_COLUMNS: &str = "id, name, module_name, module_system, version_constraint, \
    title, description, category, owner, tags, status, auto_apply, overrides, module_version, \
    '' AS derived, summary, created_at, updated_at, created_by";

pub async fn find(db: &Db, org_id: i64, name: &str) -> Result<Option<BlueprintRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        COLUMNS,
        " FROM blueprints WHERE org_id = $1 AND name = $2"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, BlueprintRow>(SQL)
        .bind(org_id).bind(name).fetch_optional(p).await)?)
}

pub async fn list(
    db: &Db,
    filter: &ListFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<Vec<BlueprintRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        LIST_COLUMNS,
        " FROM blueprints b WHERE b.org_id = $1 \
          AND ($2 IS NULL OR b.category = $2) \
          AND ($3 IS NULL OR EXISTS (SELECT 1 FROM blueprint_tags t \
               WHERE t.blueprint_id = b.id AND t.tag = $3)) \
          AND ($4 IS NULL OR b.status = $4) \
          AND ($5 OR b.status <> 'draft') \
          AND ($6 IS NULL OR LOWER(b.name) LIKE $6 ESCAPE '\\' \
               OR LOWER(b.title) LIKE $6 ESCAPE '\\' \
               OR LOWER(COALESCE(b.description, b.summary)) LIKE $6 ESCAPE '\\') \
          ORDER BY b.name LIMIT $7 OFFSET $8"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, BlueprintRow>(SQL)
        .bind(filter.org_id)
        .bind(filter.category)
        .bind(filter.tag)
        .bind(filter.status)
        .bind(filter.include_drafts)
        .bind(filter.pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(p)
        .await)?)
}

/// Records a new blueprint and its tags. A taken name is a unique violation (the caller
/// turns it into 409).
pub async fn insert(
    db: &Db,
    org_id: i64,
    name: &str,
    fields: &Fields<'_>,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<BlueprintRow> {
    const INSERT: &str = "INSERT INTO blueprints (org_id, name, module_name, module_system, \
        version_constraint, title, description, category, owner, tags, status, auto_apply, \
        overrides, module_version, derived, summary, created_at, updated_at, created_by) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
        $17, $18) RETURNING id";
    const TAG: &str = "INSERT INTO blueprint_tags (blueprint_id, tag) VALUES ($1, $2)";
    let result: std::result::Result<(), sqlx::Error> = on_pool!(db, p => async {
        let mut tx = p.begin().await?;
        let (id,): (i64,) = sqlx::query_as(INSERT)
            .bind(org_id)
            .bind(name)
            .bind(fields.module_name)
            .bind(fields.module_system)
            .bind(fields.version_constraint)
            .bind(fields.title)
            .bind(fields.description)
            .bind(fields.category)
            .bind(fields.owner)
            .bind(tags_json(fields.tags))
            .bind(fields.status)
            .bind(fields.auto_apply)
            .bind(fields.overrides)
            .bind(fields.module_version)
            .bind(fields.derived)
            .bind(fields.summary)
            .bind(now)
            .bind(created_by)
            .fetch_one(&mut *tx)
            .await?;
        for tag in fields.tags {
            sqlx::query(TAG).bind(id).bind(tag).execute(&mut *tx).await?;
        }
        tx.commit().await
    }.await);
    result?;
    find(db, org_id, name)
        .await?
        .ok_or(Error::NotFound("blueprint"))
}

/// Rewrites a blueprint's fields and tags.
pub async fn update(db: &Db, id: i64, fields: &Fields<'_>, now: DateTime<Utc>) -> Result<()> {
    const UPDATE: &str = "UPDATE blueprints SET module_name = $1, module_system = $2, \
        version_constraint = $3, title = $4, description = $5, category = $6, owner = $7, \
        tags = $8, status = $9, auto_apply = $10, overrides = $11, module_version = $12, \
        derived = $13, summary = $14, updated_at = $15 WHERE id = $16";
    const CLEAR_TAGS: &str = "DELETE FROM blueprint_tags WHERE blueprint_id = $1";
    const TAG: &str = "INSERT INTO blueprint_tags (blueprint_id, tag) VALUES ($1, $2)";
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        sqlx::query(UPDATE)
            .bind(fields.module_name)
            .bind(fields.module_system)
            .bind(fields.version_constraint)
            .bind(fields.title)
            .bind(fields.description)
            .bind(fields.category)
            .bind(fields.owner)
            .bind(tags_json(fields.tags))
            .bind(fields.status)
            .bind(fields.auto_apply)
            .bind(fields.overrides)
            .bind(fields.module_version)
            .bind(fields.derived)
            .bind(fields.summary)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(CLEAR_TAGS).bind(id).execute(&mut *tx).await?;
        for tag in fields.tags {
            sqlx::query(TAG).bind(id).bind(tag).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    })
}

/// Records what was derived from a newer matching module version.
pub async fn update_derived(
    db: &Db,
    id: i64,
    module_version: &str,
    derived: &str,
    summary: &str,
) -> Result<()> {
    const SQL: &str =
        "UPDATE blueprints SET module_version = $1, derived = $2, summary = $3 WHERE id = $4";
    on_pool!(db, p => sqlx::query(SQL)
        .bind(module_version).bind(derived).bind(summary).bind(id).execute(p).await
        .map(|_| ()))?;
    Ok(())
}

/// Deletes a blueprint; false when there was none. Deployments refer to their blueprint with
/// a restricting foreign key, so one with live deployments is refused by the database itself
/// (no check-then-delete race) and answered with 409.
pub async fn delete(db: &Db, org_id: i64, name: &str) -> Result<bool> {
    const SQL: &str = "DELETE FROM blueprints WHERE org_id = $1 AND name = $2";
    let result = on_pool!(db, p => sqlx::query(SQL).bind(org_id).bind(name).execute(p).await
        .map(|done| done.rows_affected()));
    match result {
        Ok(rows) => Ok(rows > 0),
        Err(sqlx::Error::Database(err)) if is_reference_violation(err.as_ref()) => {
            Err(Error::conflict("blueprint has live deployments"))
        }
        Err(err) => Err(err.into()),
    }
}

/// A foreign-key violation: PostgreSQL SQLSTATE 23503; SQLite extended code 787
/// (SQLITE_CONSTRAINT_FOREIGNKEY), or another constraint code (primary 19; an `ON DELETE
/// RESTRICT` action reports 1811, SQLITE_CONSTRAINT_TRIGGER) with SQLite's foreign-key
/// message.
fn is_reference_violation(err: &dyn sqlx::error::DatabaseError) -> bool {
    if err.is_foreign_key_violation() {
        return true;
    }
    let Some(code) = err.code() else {
        return false;
    };
    match code.as_ref() {
        "23503" | "787" => true,
        other => {
            other.parse::<u32>().is_ok_and(|c| c & 0xff == 19)
                && err.message().contains("FOREIGN KEY")
        }
    }
}

fn tags_json(tags: &[String]) -> String {
    serde_json::Value::from(tags.to_vec()).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::infra::db::testing;

    fn fields<'a>(tags: &'a [String]) -> Fields<'a> {
        Fields {
            module_name: "vpc",
            module_system: "aws",
            version_constraint: "",
            title: "VPC",
            description: None,
            category: Some("network"),
            owner: None,
            tags,
            status: "published",
            auto_apply: false,
            overrides: "{}",
            module_version: "1.0.0",
            derived: "{}",
            summary: "A network.",
        }
    }

    /// A referencing row makes the delete fail with 409 on both databases. The deployments
    /// table refers to blueprints the same way; a table of the test's own stands in for it.
    async fn delete_with_reference_is_a_conflict(db: Db) {
        let org = crate::names::OrgName::parse("acme").unwrap();
        let org_id = crate::identity::orgs::create_org(&db, &org).await.unwrap();
        let tags = vec!["net".to_string()];
        let row = insert(&db, org_id, "vpc", &fields(&tags), "test", Utc::now())
            .await
            .unwrap();
        let id_type = match db {
            Db::Sqlite(_) => "INTEGER",
            Db::Postgres(_) => "BIGINT",
        };
        let create = format!(
            "CREATE TABLE test_blueprint_refs (blueprint_id {id_type} \
             REFERENCES blueprints(id) ON DELETE RESTRICT)"
        );
        on_pool!(&db, p => sqlx::query(sqlx::AssertSqlSafe(create)).execute(p).await.map(|_| ()))
            .unwrap();
        on_pool!(&db, p => sqlx::query("INSERT INTO test_blueprint_refs VALUES ($1)")
            .bind(row.id).execute(p).await.map(|_| ()))
        .unwrap();

        let err = delete(&db, org_id, "vpc").await.unwrap_err();
        assert!(
            matches!(&err, Error::Conflict(m) if m == "blueprint has live deployments"),
            "{err:?}"
        );
        assert!(find(&db, org_id, "vpc").await.unwrap().is_some());

        // Once nothing refers to it (an archived deployment's reference is NULL), it goes,
        // tags and all.
        on_pool!(&db, p => sqlx::query("UPDATE test_blueprint_refs SET blueprint_id = NULL")
            .execute(p).await.map(|_| ()))
        .unwrap();
        assert!(delete(&db, org_id, "vpc").await.unwrap());
        assert!(!delete(&db, org_id, "vpc").await.unwrap());
        let left: i64 =
            on_pool!(&db, p => sqlx::query_scalar("SELECT COUNT(*) FROM blueprint_tags")
            .fetch_one(p).await)
            .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn sqlite_delete_with_reference_is_a_conflict() {
        let (db, _dir) = testing::sqlite().await;
        delete_with_reference_is_a_conflict(db).await;
    }

    #[tokio::test]
    async fn postgres_delete_with_reference_is_a_conflict() {
        let Some(db) = testing::postgres().await else {
            eprintln!("skipping: TERRACE_TEST_POSTGRES_URL is not set");
            return;
        };
        delete_with_reference_is_a_conflict(db).await;
    }
}
