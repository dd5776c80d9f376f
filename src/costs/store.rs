//! SQL for costs: catalogues and prices, estimates, the resource ids of states, imported
//! billing lines, budgets and their alerts, per-workspace settings. Every statement runs on
//! both databases.

use chrono::{DateTime, Utc};

use super::catalogue::PriceRow;
use super::focus::{Key, Sums};
use crate::error::{Error, Result};
use crate::infra::db::{Db, on_pool};

/// Rows per multi-row insert.
const CHUNK: usize = 256;

/// `INSERT INTO {table} ({columns}) VALUES (…), …` for `rows` rows of `width` values, with
/// `$n` placeholders on PostgreSQL and `?` on SQLite.
fn insert_sql(head: &str, width: usize, rows: usize, numbered: bool) -> String {
    let mut sql = String::from(head);
    sql.push_str(" VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            if numbered {
                sql.push_str(&format!("${}", row * width + column + 1));
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

// ---- catalogues ----

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CatalogueRow {
    pub id: i64,
    pub format: String,
    pub source: String,
    pub published: Option<String>,
    pub price_count: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

const CATALOGUE_COLUMNS: &str =
    "id, format, source, published, price_count, created_at, created_by";

pub async fn insert_catalogue(
    db: &Db,
    org_id: i64,
    format: &str,
    source: &str,
    actor: &str,
) -> Result<i64> {
    const SQL: &str = "INSERT INTO price_catalogues (org_id, format, source, status, created_at, \
        created_by) VALUES ($1, $2, $3, 'loading', $4, $5) RETURNING id";
    Ok(on_pool!(db, p => sqlx::query_scalar::<_, i64>(SQL)
        .bind(org_id).bind(format).bind(source).bind(Utc::now()).bind(actor)
        .fetch_one(p).await)?)
}

pub async fn insert_prices(db: &Db, catalogue_id: i64, rows: &[PriceRow]) -> Result<()> {
    const HEAD: &str = "INSERT INTO prices (catalogue_id, provider, service, region, attributes, \
        unit, price, currency)";
    let numbered = matches!(db, Db::Postgres(_));
    let attrs: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(&r.attributes).unwrap_or_else(|_| "{}".into()))
        .collect();
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        for (chunk, attrs) in rows.chunks(CHUNK).zip(attrs.chunks(CHUNK)) {
            let sql = insert_sql(HEAD, 8, chunk.len(), numbered);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (r, a) in chunk.iter().zip(attrs) {
                q = q.bind(catalogue_id).bind(&r.provider).bind(&r.service).bind(&r.region)
                    .bind(a).bind(&r.unit).bind(r.price).bind(&r.currency);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await
    })?;
    Ok(())
}

pub async fn finish_catalogue(db: &Db, id: i64, published: Option<&str>, count: i64) -> Result<()> {
    const SQL: &str = "UPDATE price_catalogues SET status = 'ready', published = $2, \
        price_count = $3 WHERE id = $1";
    on_pool!(db, p => sqlx::query(SQL).bind(id).bind(published).bind(count).execute(p).await.map(|_| ()))?;
    Ok(())
}

/// Drops a catalogue whose import failed, with its prices.
pub async fn delete_catalogue(db: &Db, id: i64) -> Result<()> {
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        sqlx::query("DELETE FROM prices WHERE catalogue_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM price_catalogues WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await
    })?;
    Ok(())
}

pub async fn latest_catalogue(db: &Db, org_id: i64) -> Result<Option<CatalogueRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        CATALOGUE_COLUMNS,
        " FROM price_catalogues WHERE org_id = $1 AND status = 'ready' ORDER BY id DESC LIMIT 1"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, CatalogueRow>(SQL)
        .bind(org_id).fetch_optional(p).await)?)
}

pub async fn list_catalogues(
    db: &Db,
    org_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<CatalogueRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        CATALOGUE_COLUMNS,
        " FROM price_catalogues WHERE org_id = $1 AND status = 'ready' ORDER BY id DESC \
          LIMIT $2 OFFSET $3"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, CatalogueRow>(SQL)
        .bind(org_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

/// Every price of a catalogue: provider, service, region, attributes JSON, unit, price,
/// currency.
pub async fn catalogue_prices(db: &Db, id: i64) -> Result<Vec<PriceRow>> {
    type Row = (String, String, String, String, String, f64, String);
    const SQL: &str = "SELECT provider, service, region, attributes, unit, price, currency \
        FROM prices WHERE catalogue_id = $1";
    let rows: Vec<Row> =
        on_pool!(db, p => sqlx::query_as::<_, Row>(SQL).bind(id).fetch_all(p).await)?;
    Ok(rows
        .into_iter()
        .map(
            |(provider, service, region, attributes, unit, price, currency)| PriceRow {
                provider,
                service,
                region,
                attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                unit,
                price,
                currency,
            },
        )
        .collect())
}

// ---- estimates ----

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EstimateRow {
    pub workspace_id: i64,
    pub state_version_id: Option<i64>,
    pub status: String,
    pub catalogue: String,
    pub currency: String,
    pub monthly: f64,
    pub unpriced: i64,
    pub detail: String,
    pub created_at: DateTime<Utc>,
}

const ESTIMATE_COLUMNS: &str = "workspace_id, state_version_id, status, catalogue, currency, \
    monthly, unpriced, detail, created_at";

/// What an estimate row records.
pub struct NewEstimate<'a> {
    pub org_id: i64,
    pub workspace_id: i64,
    pub state_version_id: Option<i64>,
    pub run_id: Option<i64>,
    pub status: &'a str,
    pub catalogue: &'a str,
    pub currency: &'a str,
    pub monthly: f64,
    pub delta_monthly: Option<f64>,
    pub unpriced: i64,
    pub detail: &'a str,
    pub created_at: DateTime<Utc>,
}

/// Records an estimate; a state version's is kept once, a run's is replaced by a newer plan.
pub async fn insert_estimate(db: &Db, e: NewEstimate<'_>) -> Result<()> {
    const SQL_VERSION: &str = "INSERT INTO cost_estimates (org_id, workspace_id, state_version_id, \
        run_id, status, catalogue, currency, monthly, delta_monthly, unpriced, detail, created_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
        ON CONFLICT (state_version_id) DO NOTHING";
    const SQL_RUN: &str = "INSERT INTO cost_estimates (org_id, workspace_id, state_version_id, \
        run_id, status, catalogue, currency, monthly, delta_monthly, unpriced, detail, created_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
        ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, \
        catalogue = excluded.catalogue, currency = excluded.currency, \
        monthly = excluded.monthly, delta_monthly = excluded.delta_monthly, \
        unpriced = excluded.unpriced, detail = excluded.detail, created_at = excluded.created_at";
    let sql = if e.run_id.is_some() {
        SQL_RUN
    } else {
        SQL_VERSION
    };
    on_pool!(db, p => sqlx::query(sql)
        .bind(e.org_id).bind(e.workspace_id).bind(e.state_version_id).bind(e.run_id)
        .bind(e.status).bind(e.catalogue).bind(e.currency).bind(e.monthly).bind(e.delta_monthly)
        .bind(e.unpriced).bind(e.detail).bind(e.created_at)
        .execute(p).await.map(|_| ()))?;
    Ok(())
}

/// Which of the versions with ids from `first` to `last` have an estimate.
pub async fn estimated_versions(
    db: &Db,
    first: i64,
    last: i64,
) -> Result<std::collections::HashSet<i64>> {
    const SQL: &str = "SELECT state_version_id FROM cost_estimates \
        WHERE state_version_id BETWEEN $1 AND $2";
    let ids: Vec<Option<i64>> = on_pool!(db, p => sqlx::query_scalar(SQL)
        .bind(first).bind(last).fetch_all(p).await)?;
    Ok(ids.into_iter().flatten().collect())
}

/// The newest state estimate of each workspace of the org created at or before `until`.
pub async fn state_estimates_at(
    db: &Db,
    org_id: i64,
    until: DateTime<Utc>,
) -> Result<Vec<EstimateRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        ESTIMATE_COLUMNS,
        // One pass over the org's estimates: a subquery per row (the newest of its own
        // workspace) made this quadratic in the history, seconds at a few thousand versions.
        " FROM cost_estimates e JOIN (SELECT MAX(id) AS newest FROM cost_estimates \
          WHERE org_id = $1 AND state_version_id IS NOT NULL AND created_at <= $2 \
          GROUP BY workspace_id) n ON n.newest = e.id"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, EstimateRow>(SQL)
        .bind(org_id).bind(until).fetch_all(p).await)?)
}

/// A workspace's state estimates, newest first, without their detail.
pub async fn workspace_history(
    db: &Db,
    workspace_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<EstimateRow>> {
    const SQL: &str = "SELECT workspace_id, state_version_id, status, catalogue, \
        currency, monthly, unpriced, '' AS detail, created_at FROM cost_estimates \
        WHERE workspace_id = $1 AND state_version_id IS NOT NULL ORDER BY id DESC LIMIT $2 OFFSET $3";
    Ok(on_pool!(db, p => sqlx::query_as::<_, EstimateRow>(SQL)
        .bind(workspace_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

pub async fn run_estimate(db: &Db, run_id: i64) -> Result<Option<EstimateRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        ESTIMATE_COLUMNS,
        " FROM cost_estimates WHERE run_id = $1"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, EstimateRow>(SQL)
        .bind(run_id).fetch_optional(p).await)?)
}

/// Replaces the ids and ARNs recorded for a workspace's current state.
pub async fn replace_resource_ids(
    db: &Db,
    org_id: i64,
    workspace_id: i64,
    ids: &[String],
) -> Result<()> {
    const HEAD: &str = "INSERT INTO cost_resource_ids (org_id, workspace_id, resource_id)";
    let numbered = matches!(db, Db::Postgres(_));
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        sqlx::query("DELETE FROM cost_resource_ids WHERE workspace_id = $1")
            .bind(workspace_id).execute(&mut *tx).await?;
        for chunk in ids.chunks(CHUNK) {
            let sql = insert_sql(HEAD, 3, chunk.len(), numbered) + " ON CONFLICT DO NOTHING";
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(org_id).bind(workspace_id).bind(id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await
    })?;
    Ok(())
}

pub async fn resource_index(db: &Db, org_id: i64) -> Result<Vec<(String, i64)>> {
    const SQL: &str = "SELECT resource_id, workspace_id FROM cost_resource_ids WHERE org_id = $1";
    Ok(on_pool!(db, p => sqlx::query_as::<_, (String, i64)>(SQL).bind(org_id).fetch_all(p).await)?)
}

// ---- imports of billing data ----

pub async fn insert_import(db: &Db, org_id: i64, filename: &str, actor: &str) -> Result<i64> {
    const SQL: &str = "INSERT INTO cost_imports (org_id, filename, status, created_at, created_by) \
        VALUES ($1, $2, 'loading', $3, $4) RETURNING id";
    Ok(on_pool!(db, p => sqlx::query_scalar::<_, i64>(SQL)
        .bind(org_id).bind(filename).bind(Utc::now()).bind(actor).fetch_one(p).await)?)
}

pub async fn insert_lines(db: &Db, import_id: i64, rows: &[(Key, Sums)]) -> Result<()> {
    const HEAD: &str = "INSERT INTO cost_lines (import_id, source, period, workspace_id, \
        attribution, resource_id, service, tags, currency, effective_cost, billed_cost, \
        list_cost, last_day, line_count)";
    let numbered = matches!(db, Db::Postgres(_));
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        for chunk in rows.chunks(CHUNK) {
            let sql = insert_sql(HEAD, 14, chunk.len(), numbered);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (k, s) in chunk {
                q = q.bind(import_id).bind(&k.source).bind(&k.period).bind(k.workspace_id)
                    .bind(k.attribution).bind(&k.resource_id).bind(&k.service).bind(&k.tags)
                    .bind(&k.currency).bind(s.effective).bind(s.billed).bind(s.list)
                    .bind(s.last_day).bind(s.lines);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await
    })?;
    Ok(())
}

/// Makes `import_id` the current import of every `(source, period)` it holds, in one
/// statement, then drops the lines nothing refers to any more.
pub async fn finish_import(
    db: &Db,
    org_id: i64,
    import_id: i64,
    lines: i64,
    periods: &[(String, String)],
) -> Result<()> {
    const HEAD: &str = "INSERT INTO cost_periods (org_id, source, period, import_id)";
    let numbered = matches!(db, Db::Postgres(_));
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        for chunk in periods.chunks(CHUNK) {
            let sql = insert_sql(HEAD, 4, chunk.len(), numbered)
                + " ON CONFLICT (org_id, source, period) DO UPDATE SET import_id = excluded.import_id";
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (source, period) in chunk {
                q = q.bind(org_id).bind(source).bind(period).bind(import_id);
            }
            q.execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE cost_imports SET status = 'done', lines = $2 WHERE id = $1")
            .bind(import_id).bind(lines).execute(&mut *tx).await?;
        tx.commit().await
    })?;
    const SWEEP: &str = "DELETE FROM cost_lines WHERE import_id IN (SELECT id FROM cost_imports \
        WHERE org_id = $1 AND id <> $2) AND NOT EXISTS (SELECT 1 FROM cost_periods c \
        WHERE c.org_id = $1 AND c.import_id = cost_lines.import_id \
        AND c.source = cost_lines.source AND c.period = cost_lines.period)";
    on_pool!(db, p => sqlx::query(SWEEP).bind(org_id).bind(import_id).execute(p).await.map(|_| ()))?;
    Ok(())
}

/// Drops what a failed import wrote and records why it failed.
pub async fn fail_import(db: &Db, import_id: i64, error: &str) -> Result<()> {
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        sqlx::query("DELETE FROM cost_lines WHERE import_id = $1")
            .bind(import_id).execute(&mut *tx).await?;
        sqlx::query("UPDATE cost_imports SET status = 'failed', error = $2 WHERE id = $1")
            .bind(import_id).bind(error).execute(&mut *tx).await?;
        tx.commit().await
    })?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImportRow {
    pub id: i64,
    pub filename: String,
    pub status: String,
    pub lines: i64,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

pub async fn list_imports(db: &Db, org_id: i64, limit: i64, offset: i64) -> Result<Vec<ImportRow>> {
    const SQL: &str = "SELECT id, filename, status, lines, error, created_at, created_by \
        FROM cost_imports WHERE org_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3";
    Ok(on_pool!(db, p => sqlx::query_as::<_, ImportRow>(SQL)
        .bind(org_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

/// A summed billing line of a current import.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LineRow {
    pub period: String,
    pub workspace_id: Option<i64>,
    pub service: String,
    pub tags: String,
    pub currency: String,
    pub effective_cost: f64,
    pub billed_cost: f64,
    pub list_cost: f64,
    pub last_day: i64,
}

/// The current lines of the org for periods `from..=to` (`YYYY-MM`).
pub async fn current_lines(db: &Db, org_id: i64, from: &str, to: &str) -> Result<Vec<LineRow>> {
    const SQL: &str = "SELECT l.period, l.workspace_id, l.service, l.tags, l.currency, \
        l.effective_cost, l.billed_cost, l.list_cost, l.last_day FROM cost_periods c JOIN cost_lines l ON l.import_id = c.import_id \
        AND l.source = c.source AND l.period = c.period \
        WHERE c.org_id = $1 AND c.period >= $2 AND c.period <= $3";
    Ok(on_pool!(db, p => sqlx::query_as::<_, LineRow>(SQL)
        .bind(org_id).bind(from).bind(to).fetch_all(p).await)?)
}

// ---- budgets ----

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BudgetRow {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub amount: f64,
    pub currency: String,
    pub period: String,
    pub thresholds: String,
    pub basis: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

const BUDGET_COLUMNS: &str =
    "id, name, scope, amount, currency, period, thresholds, basis, created_at, created_by";

pub struct NewBudget<'a> {
    pub org_id: i64,
    pub name: &'a str,
    pub scope: &'a str,
    pub amount: f64,
    pub currency: &'a str,
    pub period: &'a str,
    pub thresholds: &'a str,
    pub basis: &'a str,
    pub created_by: &'a str,
}

pub async fn insert_budget(db: &Db, b: NewBudget<'_>) -> Result<()> {
    const SQL: &str = "INSERT INTO budgets (org_id, name, scope, amount, currency, period, \
        thresholds, basis, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    on_pool!(db, p => sqlx::query(SQL)
        .bind(b.org_id).bind(b.name).bind(b.scope).bind(b.amount).bind(b.currency).bind(b.period)
        .bind(b.thresholds).bind(b.basis).bind(Utc::now()).bind(b.created_by)
        .execute(p).await.map(|_| ()))
    .map_err(|e| Error::from(e).or_conflict(|| "a budget of that name exists".into()))?;
    Ok(())
}

pub async fn budgets(db: &Db, org_id: i64) -> Result<Vec<BudgetRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        BUDGET_COLUMNS,
        " FROM budgets WHERE org_id = $1 ORDER BY name"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, BudgetRow>(SQL).bind(org_id).fetch_all(p).await)?)
}

pub async fn delete_budget(db: &Db, org_id: i64, name: &str) -> Result<bool> {
    const SQL: &str = "DELETE FROM budgets WHERE org_id = $1 AND name = $2";
    let done = on_pool!(db, p => sqlx::query(SQL).bind(org_id).bind(name).execute(p).await
        .map(|r| r.rows_affected()))?;
    Ok(done > 0)
}

/// Records that a budget crossed `threshold` in `period`; `false` when it already had.
pub async fn record_alert(
    db: &Db,
    budget_id: i64,
    period: &str,
    threshold: f64,
    spend: f64,
    ratio: f64,
) -> Result<bool> {
    const SQL: &str = "INSERT INTO budget_alerts (budget_id, period, threshold, spend, ratio, \
        fired_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
    let done = on_pool!(db, p => sqlx::query(SQL)
        .bind(budget_id).bind(period).bind(threshold).bind(spend).bind(ratio).bind(Utc::now())
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertRow {
    pub period: String,
    pub threshold: f64,
    pub spend: f64,
    pub ratio: f64,
    pub fired_at: DateTime<Utc>,
}

pub async fn alerts(db: &Db, budget_id: i64) -> Result<Vec<AlertRow>> {
    const SQL: &str = "SELECT period, threshold, spend, ratio, fired_at FROM budget_alerts \
        WHERE budget_id = $1 ORDER BY period, threshold";
    Ok(on_pool!(db, p => sqlx::query_as::<_, AlertRow>(SQL).bind(budget_id).fetch_all(p).await)?)
}

// ---- per-workspace settings ----

pub async fn workspace_settings(db: &Db, workspace_id: i64) -> Result<Option<String>> {
    const SQL: &str = "SELECT settings FROM cost_workspace_settings WHERE workspace_id = $1";
    Ok(on_pool!(db, p => sqlx::query_scalar::<_, String>(SQL)
        .bind(workspace_id).fetch_optional(p).await)?)
}

pub async fn put_workspace_settings(db: &Db, workspace_id: i64, settings: &str) -> Result<()> {
    const SQL: &str = "INSERT INTO cost_workspace_settings (workspace_id, settings, updated_at) \
        VALUES ($1, $2, $3) ON CONFLICT (workspace_id) DO UPDATE SET settings = excluded.settings, \
        updated_at = excluded.updated_at";
    on_pool!(db, p => sqlx::query(SQL).bind(workspace_id).bind(settings).bind(Utc::now())
        .execute(p).await.map(|_| ()))?;
    Ok(())
}
