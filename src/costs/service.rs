//! Cost rules and authorization: catalogue imports, estimates of states and plans (and the
//! history of state versions), billing imports, the cost phase of runs.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use chrono::Utc;
use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

use super::Ctx;
use super::catalogue::{self, Catalogue, Format, ParseError};
use super::estimate::{self, Estimate, PlanEstimate, Pricing};
use super::focus::{self, Attribution};
use super::rules::Usage;
use super::store;
use super::views;
use crate::deployments::phase::{Gate, Planned};
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal, Resource};
use crate::infra::notes::note_operation;
use crate::names::{OrgName, WorkspaceName};
use crate::pagination::{Page, Paginated};

/// Summed billing keys held in memory before they are written.
const FLUSH_KEYS: usize = 20_000;
/// The largest AWS offer JSON read (it is parsed whole).
const MAX_JSON_OFFER: u64 = 1 << 30;

pub(super) async fn org_id(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    action: Action,
) -> Result<i64> {
    crate::identity::orgs::resolve(&app.db, principal, action, Resource::Org(org.as_str())).await
}

async fn workspace_id(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    action: Action,
) -> Result<(i64, i64)> {
    let org_id = crate::identity::orgs::resolve(
        &app.db,
        principal,
        action,
        Resource::Workspace {
            org: org.as_str(),
            workspace: ws.as_str(),
        },
    )
    .await?;
    let id = crate::state::feed::workspaces(&app.state, org_id)
        .await?
        .into_iter()
        .find(|(_, name)| name == ws.as_str())
        .map(|(id, _)| id)
        .ok_or(Error::NotFound("workspace"))?;
    Ok((org_id, id))
}

/// The org's newest imported catalogue, or the built-in sample.
pub async fn catalogue_for(app: &Ctx, org_id: i64) -> Result<Arc<Catalogue>> {
    let Some(row) = store::latest_catalogue(&app.db, org_id).await? else {
        return Ok(app.sample.clone());
    };
    if let Some(cached) = app.cached_catalogue(org_id, row.id) {
        return Ok(cached);
    }
    let mut catalogue = Catalogue::new(row.id.to_string(), false, row.published.clone());
    for price in store::catalogue_prices(&app.db, row.id).await? {
        catalogue.insert(price);
    }
    let catalogue = Arc::new(catalogue);
    app.cache_catalogue(org_id, row.id, catalogue.clone());
    Ok(catalogue)
}

/// The usage amounts for a workspace: the usage file with its settings on top.
pub async fn usage_for(app: &Ctx, workspace_id: Option<i64>) -> Result<Usage> {
    let Some(id) = workspace_id else {
        return Ok((*app.usage).clone());
    };
    let settings: views::CostSettings = match store::workspace_settings(&app.db, id).await? {
        Some(text) => serde_json::from_str(&text).unwrap_or_default(),
        None => return Ok((*app.usage).clone()),
    };
    Ok(app.usage.merged(&Usage {
        region: settings.region,
        usage: settings.usage,
    }))
}

fn state_estimate(app: &Ctx, catalogue: &Catalogue, usage: &Usage, doc: &Value) -> Estimate {
    let pricing = Pricing {
        rules: &app.rules,
        catalogue,
        usage,
        provider_regions: HashMap::new(),
    };
    estimate::estimate(&pricing, &estimate::state_instances(doc))
}

/// `GET …/workspaces/{ws}/cost`: the run-rate of the current state.
pub async fn workspace_cost(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<views::WorkspaceCost> {
    let (org_id, id) = workspace_id(app, principal, org, ws, Action::StateRead).await?;
    let bytes = crate::state::service::read_state(&app.state, principal, org, ws)
        .await?
        .ok_or(Error::NotFound("state"))?;
    if bytes.len() as i64 > MAX_ESTIMATED_STATE {
        return Err(Error::Unprocessable(vec![
            "the current state is over 32 MiB, too large to estimate".into(),
        ]));
    }
    let doc: Value = serde_json::from_slice(&bytes).map_err(|_| {
        Error::Unprocessable(vec!["the current state is not Terraform JSON".into()])
    })?;
    let catalogue = catalogue_for(app, org_id).await?;
    let usage = usage_for(app, Some(id)).await?;
    Ok(views::WorkspaceCost {
        workspace: ws.to_string(),
        estimate: state_estimate(app, &catalogue, &usage, &doc),
    })
}

/// A workspace's run-rate over its state versions, newest first.
pub async fn workspace_history(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    page: Page,
) -> Result<Paginated<views::HistoryEntry>> {
    let (org_id, _) = workspace_id(app, principal, org, ws, Action::StateRead).await?;
    catch_up(app, Some(org_id)).await?;
    recorded_history(app, principal, org, ws, page).await
}

/// The history as recorded so far, without estimating what was written since: what a page
/// shows at once (the history job catches up every 30 s).
pub async fn recorded_history(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    page: Page,
) -> Result<Paginated<views::HistoryEntry>> {
    let (_, id) = workspace_id(app, principal, org, ws, Action::StateRead).await?;
    let rows = store::workspace_history(&app.db, id, page.fetch_limit(), page.offset).await?;
    Ok(Paginated::new(rows, page).map(|r| views::HistoryEntry {
        state_version_id: r.state_version_id,
        status: r.status,
        catalogue: r.catalogue,
        currency: r.currency,
        monthly: r.monthly,
        unpriced: r.unpriced,
        created_at: r.created_at,
    }))
}

pub async fn workspace_settings(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<views::CostSettings> {
    let (_, id) = workspace_id(app, principal, org, ws, Action::StateRead).await?;
    Ok(match store::workspace_settings(&app.db, id).await? {
        Some(text) => serde_json::from_str(&text).unwrap_or_default(),
        None => views::CostSettings::default(),
    })
}

pub async fn put_workspace_settings(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    settings: views::CostSettings,
) -> Result<views::CostSettings> {
    let (_, id) = workspace_id(app, principal, org, ws, Action::StateWrite).await?;
    note_operation("cost-settings:update", format!("workspace:{ws}"));
    if settings.usage.values().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(Error::invalid("usage amounts must be non-negative numbers"));
    }
    let text = serde_json::to_string(&settings).map_err(anyhow::Error::from)?;
    store::put_workspace_settings(&app.db, id, &text).await?;
    Ok(settings)
}

/// `POST /api/v1/orgs/{org}/cost-estimates`: a plan's before, after and delta.
pub async fn estimate_plan(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    workspace: Option<&WorkspaceName>,
    plan: &Value,
) -> Result<PlanEstimate> {
    let org_id = org_id(app, principal, org, Action::OrgRead).await?;
    if !estimate::is_plan(plan) {
        return Err(Error::Unprocessable(vec![
            "the body must be `terraform show -json` output of a saved plan (no resource_changes)"
                .into(),
        ]));
    }
    let ws_id = match workspace {
        Some(ws) => Some(
            workspace_id(app, principal, org, ws, Action::StateRead)
                .await?
                .1,
        ),
        None => None,
    };
    let catalogue = catalogue_for(app, org_id).await?;
    let usage = usage_for(app, ws_id).await?;
    Ok(price_plan(app, &catalogue, &usage, plan))
}

fn price_plan(app: &Ctx, catalogue: &Catalogue, usage: &Usage, plan: &Value) -> PlanEstimate {
    let pricing = Pricing {
        rules: &app.rules,
        catalogue,
        usage,
        provider_regions: estimate::plan_regions(plan),
    };
    estimate::estimate_plan(&pricing, plan)
}

/// The estimate the cost phase kept on a run.
pub async fn run_cost(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    run_id: i64,
) -> Result<views::RunCost> {
    crate::deployments::runs::show(&app.deployments, principal, org, run_id).await?;
    let row = store::run_estimate(&app.db, run_id)
        .await?
        .ok_or(Error::NotFound("run estimate"))?;
    let estimate: PlanEstimate = serde_json::from_str(&row.detail).map_err(anyhow::Error::from)?;
    Ok(views::RunCost {
        run_id,
        created_at: row.created_at,
        estimate,
    })
}

/// The cost phase of a run: estimate the plan, keep it on the run, evaluate budgets, and
/// stop the run when an `estimate` budget covering its workspace would go over 100 %.
pub async fn check_plan(app: &Ctx, planned: Planned<'_>) -> Result<Gate> {
    let catalogue = catalogue_for(app, planned.org_id).await?;
    let usage = usage_for(app, Some(planned.workspace_id)).await?;
    let plan = price_plan(app, &catalogue, &usage, planned.plan_json);
    let detail = serde_json::to_string(&plan).map_err(anyhow::Error::from)?;
    store::insert_estimate(
        &app.db,
        store::NewEstimate {
            org_id: planned.org_id,
            workspace_id: planned.workspace_id,
            state_version_id: None,
            run_id: Some(planned.run_id),
            status: "ok",
            catalogue: &plan.catalogue.version,
            currency: &plan.currency,
            monthly: plan.after.monthly,
            delta_monthly: Some(plan.delta.monthly),
            unpriced: plan.unpriced.len() as i64,
            detail: &detail,
            created_at: Utc::now(),
        },
    )
    .await?;
    catch_up(app, Some(planned.org_id)).await?;
    let gate = super::budgets::gate(app, planned.org_id, planned.workspace_id, &plan).await?;
    super::budgets::evaluate(app, planned.org_id, &[]).await?;
    Ok(gate)
}

// ---- history ----

/// How old a version must be before the history stops looking at the ids below it again.
/// An id is handed out when a write's transaction inserts its row, so a version may become
/// visible after one with a higher id; but its transaction is short (the bytes are stored
/// before it begins), never this long.
const SETTLED: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// Estimates every state version not estimated yet (of `org_id`, or all), oldest first, and
/// records the ids and ARNs of each workspace's newest state. Answers how many it did.
///
/// It starts after the last settled version an earlier call of this process walked (see
/// [`SETTLED`]), not from the first version ever written, so a call costs what was written
/// since, not the whole history. A new process walks the whole history once.
pub async fn catch_up(app: &Ctx, org_id: Option<i64>) -> Result<usize> {
    const BATCH: i64 = 200;
    let settled_before = Utc::now() - SETTLED;
    let mut after = app.history_mark(org_id);
    // The last id up to which every version is estimated and settled.
    let mut mark = after;
    let mut settled = true;
    let mut done = 0;
    let mut orgs = HashSet::new();
    loop {
        let versions =
            crate::state::feed::versions_after(&app.state, after, org_id, false, BATCH).await?;
        let (Some(first), Some(last)) = (versions.first(), versions.last()) else {
            break;
        };
        let estimated = store::estimated_versions(&app.db, first.id, last.id).await?;
        after = last.id;
        let n = versions.len();
        for version in versions {
            if !estimated.contains(&version.id) {
                estimate_version(app, &version).await?;
                orgs.insert(version.org_id);
                done += 1;
            }
            settled &= version.created_at < settled_before;
            if settled {
                mark = version.id;
            }
        }
        if (n as i64) < BATCH {
            break;
        }
    }
    app.set_history_mark(org_id, mark);
    for org in orgs {
        super::budgets::evaluate(app, org, &[]).await?;
    }
    Ok(done)
}

/// Largest state body estimated. An estimate parses the whole document, which takes several
/// times its size in memory; larger states are recorded as `too_large` instead, so that
/// nobody can make a replica exhaust its memory by writing one.
pub const MAX_ESTIMATED_STATE: i64 = 32 * 1024 * 1024;

async fn estimate_version(app: &Ctx, version: &crate::state::feed::FeedVersion) -> Result<()> {
    let doc: Option<Value> = if version.size > MAX_ESTIMATED_STATE {
        None
    } else {
        let bytes = crate::state::feed::version_bytes(&app.state, version).await?;
        serde_json::from_slice(&bytes)
            .ok()
            .filter(|d: &Value| d["resources"].is_array())
    };
    let Some(doc) = doc else {
        let status = if version.size > MAX_ESTIMATED_STATE {
            "too_large"
        } else {
            "unreadable"
        };
        return store::insert_estimate(
            &app.db,
            store::NewEstimate {
                org_id: version.org_id,
                workspace_id: version.workspace_id,
                state_version_id: Some(version.id),
                run_id: None,
                status,
                catalogue: "",
                currency: "USD",
                monthly: 0.0,
                delta_monthly: None,
                unpriced: 0,
                detail: "{}",
                created_at: version.created_at,
            },
        )
        .await;
    };
    let catalogue = catalogue_for(app, version.org_id).await?;
    let usage = usage_for(app, Some(version.workspace_id)).await?;
    let estimate = state_estimate(app, &catalogue, &usage, &doc);
    let detail = serde_json::to_string(&estimate).map_err(anyhow::Error::from)?;
    store::replace_resource_ids(
        &app.db,
        version.org_id,
        version.workspace_id,
        &estimate::state_resource_ids(&doc),
    )
    .await?;
    store::insert_estimate(
        &app.db,
        store::NewEstimate {
            org_id: version.org_id,
            workspace_id: version.workspace_id,
            state_version_id: Some(version.id),
            run_id: None,
            status: "ok",
            catalogue: &estimate.catalogue.version,
            currency: &estimate.currency,
            monthly: estimate.monthly,
            delta_monthly: None,
            unpriced: estimate.unpriced.len() as i64,
            detail: &detail,
            created_at: version.created_at,
        },
    )
    .await
}

// ---- streaming imports ----

/// A blocking reader over chunks sent from the async side, failing when the sender reports
/// an error or the input grows past `limit`.
struct ChannelReader {
    rx: mpsc::Receiver<std::result::Result<Bytes, String>>,
    current: Bytes,
    read: u64,
    limit: u64,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        self.current.copy_to_slice(&mut buf[..n]);
        self.read += n as u64;
        if self.read > self.limit {
            return Err(std::io::Error::other(format!(
                "the file is larger than {} bytes",
                self.limit
            )));
        }
        Ok(n)
    }
}

/// Feeds `input` to `parse` (run on a blocking thread) and `batches` it produces to `sink`,
/// with bounded buffers on both sides.
async fn stream_through<S, E, T, R, P, F, Fut>(
    input: S,
    limit: u64,
    parse: P,
    mut sink: F,
) -> Result<std::result::Result<R, ParseError>>
where
    S: Stream<Item = std::result::Result<Bytes, E>>,
    E: std::fmt::Display,
    T: Send + 'static,
    R: Send + 'static,
    P: FnOnce(
            ChannelReaderHandle,
            &mut dyn FnMut(T) -> std::result::Result<(), ParseError>,
        ) -> std::result::Result<R, ParseError>
        + Send
        + 'static,
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let (byte_tx, byte_rx) = mpsc::channel(16);
    let (batch_tx, mut batch_rx) = mpsc::channel::<T>(2);
    let parser = tokio::task::spawn_blocking(move || {
        let reader = ChannelReaderHandle(ChannelReader {
            rx: byte_rx,
            current: Bytes::new(),
            read: 0,
            limit,
        });
        parse(reader, &mut |batch| {
            batch_tx.blocking_send(batch).map_err(|_| ParseError {
                line: None,
                message: "the import stopped".into(),
            })
        })
    });
    let pump = async move {
        let mut input = std::pin::pin!(input);
        while let Some(chunk) = input.next().await {
            let item = chunk.map_err(|e| format!("reading the upload: {e}"));
            let failed = item.is_err();
            if byte_tx.send(item).await.is_err() || failed {
                break;
            }
        }
    };
    let write = async {
        while let Some(batch) = batch_rx.recv().await {
            sink(batch).await?;
        }
        Ok::<(), Error>(())
    };
    let ((), written) = tokio::join!(pump, write);
    let parsed = parser.await.map_err(anyhow::Error::from)?;
    written?;
    Ok(parsed)
}

/// The reader handed to a parser.
pub struct ChannelReaderHandle(ChannelReader);

impl Read for ChannelReaderHandle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

/// Imports a price file as a new catalogue version of the org.
pub async fn import_prices<S, E>(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    format: Format,
    source: &str,
    input: S,
) -> Result<views::CatalogueVersion>
where
    S: Stream<Item = std::result::Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let org_id = org_id(app, principal, org, Action::OrgAdmin).await?;
    note_operation("prices:import", format!("org:{org}"));
    let actor = principal.actor();
    let id = store::insert_catalogue(&app.db, org_id, format.as_str(), source, &actor).await?;
    let mut count = 0i64;
    let limit = if format == Format::AwsJson {
        MAX_JSON_OFFER
    } else {
        u64::MAX
    };
    let outcome = stream_through(
        input,
        limit,
        move |reader, sink| catalogue::parse(format, reader, sink),
        |rows: Vec<catalogue::PriceRow>| {
            count += rows.len() as i64;
            let db = app.db.clone();
            async move { store::insert_prices(&db, id, &rows).await }
        },
    )
    .await;
    let meta = match outcome {
        Ok(Ok(meta)) => meta,
        Ok(Err(e)) => {
            store::delete_catalogue(&app.db, id).await?;
            return Err(Error::Unprocessable(vec![format!("{source}: {e}")]));
        }
        Err(e) => {
            store::delete_catalogue(&app.db, id).await?;
            return Err(e);
        }
    };
    if count == 0 {
        store::delete_catalogue(&app.db, id).await?;
        return Err(Error::Unprocessable(vec![format!(
            "{source}: no on-demand prices found"
        )]));
    }
    store::finish_catalogue(&app.db, id, meta.published.as_deref(), count).await?;
    let row = store::latest_catalogue(&app.db, org_id)
        .await?
        .ok_or(Error::NotFound("catalogue"))?;
    Ok(catalogue_view(row))
}

fn catalogue_view(row: store::CatalogueRow) -> views::CatalogueVersion {
    views::CatalogueVersion {
        version: row.id.to_string(),
        format: row.format,
        source: row.source,
        published: row.published,
        prices: row.price_count,
        sample: false,
        created_at: Some(row.created_at),
        created_by: Some(row.created_by),
    }
}

/// The org's catalogue versions, newest first, and the sample when none was imported.
pub async fn list_catalogues(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    page: Page,
) -> Result<Paginated<views::CatalogueVersion>> {
    let org_id = org_id(app, principal, org, Action::OrgRead).await?;
    let rows = store::list_catalogues(&app.db, org_id, page.fetch_limit(), page.offset).await?;
    if rows.is_empty() && page.offset == 0 {
        let sample = views::CatalogueVersion {
            version: catalogue::SAMPLE_VERSION.into(),
            format: "terrace".into(),
            source: "built-in sample".into(),
            published: Some(catalogue::SAMPLE_PUBLISHED.into()),
            prices: catalogue::SAMPLE_CSV
                .lines()
                .filter(|l| !l.starts_with('#'))
                .count() as i64
                - 1,
            sample: true,
            created_at: None,
            created_by: None,
        };
        return Ok(Paginated::new(vec![sample], page));
    }
    Ok(Paginated::new(rows, page).map(catalogue_view))
}

/// Imports a FOCUS export: attributed, summed, and made the current data of each billing
/// period and source it holds; a malformed line keeps nothing of the import.
pub async fn import_costs<S, E>(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    filename: &str,
    source: Option<&str>,
    input: S,
) -> Result<views::Import>
where
    S: Stream<Item = std::result::Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let org_id = org_id(app, principal, org, Action::OrgAdmin).await?;
    note_operation("costs:import", format!("org:{org}"));
    catch_up(app, Some(org_id)).await?;
    let attribution = Attribution {
        by_resource: store::resource_index(&app.db, org_id)
            .await?
            .into_iter()
            .collect(),
        by_name: crate::state::feed::workspaces(&app.state, org_id)
            .await?
            .into_iter()
            .map(|(id, name)| (name, id))
            .collect(),
        tag: app.attribution_tag.to_string(),
    };
    let actor = principal.actor();
    let id = store::insert_import(&app.db, org_id, filename, &actor).await?;
    let source = source.map(str::to_string);
    let outcome = stream_through(
        input,
        u64::MAX,
        move |reader, sink| focus::read(reader, &attribution, source.as_deref(), FLUSH_KEYS, sink),
        |rows: Vec<(focus::Key, focus::Sums)>| {
            let db = app.db.clone();
            async move { store::insert_lines(&db, id, &rows).await }
        },
    )
    .await;
    let summary = match outcome {
        Ok(Ok(summary)) => summary,
        Ok(Err(e)) => {
            let message = format!("{filename}: {e}");
            store::fail_import(&app.db, id, &message).await?;
            return Err(Error::Unprocessable(vec![message]));
        }
        Err(e) => {
            store::fail_import(&app.db, id, &e.to_string()).await?;
            return Err(e);
        }
    };
    let periods: Vec<(String, String)> = summary.periods.into_iter().collect();
    store::finish_import(&app.db, org_id, id, summary.lines as i64, &periods).await?;
    let months: Vec<String> = periods.iter().map(|(_, p)| p.clone()).collect();
    super::budgets::evaluate(app, org_id, &months).await?;
    let row = store::list_imports(&app.db, org_id, 1, 0)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or(Error::NotFound("import"))?;
    let mut view = import_view(row);
    view.periods = periods
        .into_iter()
        .map(|(source, period)| views::ImportPeriod { source, period })
        .collect();
    Ok(view)
}

fn import_view(row: store::ImportRow) -> views::Import {
    views::Import {
        id: row.id,
        filename: row.filename,
        status: row.status,
        lines: row.lines,
        error: row.error,
        periods: Vec::new(),
        created_at: row.created_at,
        created_by: row.created_by,
    }
}

pub async fn list_imports(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    page: Page,
) -> Result<Paginated<views::Import>> {
    let org_id = org_id(app, principal, org, Action::OrgRead).await?;
    let rows = store::list_imports(&app.db, org_id, page.fetch_limit(), page.offset).await?;
    Ok(Paginated::new(rows, page).map(import_view))
}

/// Estimates the workspace run-rates current at the end of each month, by workspace id.
pub(super) async fn estimates_at(
    app: &Ctx,
    org_id: i64,
    until: chrono::DateTime<Utc>,
) -> Result<HashMap<i64, (f64, Option<Estimate>)>> {
    let rows = store::state_estimates_at(&app.db, org_id, until).await?;
    Ok(rows
        .into_iter()
        .filter(|r| r.status == "ok")
        .map(|r| {
            let detail = serde_json::from_str::<Estimate>(&r.detail).ok();
            (r.workspace_id, (r.monthly, detail))
        })
        .collect())
}

/// The current lines of periods `from..=to`.
pub(super) async fn lines(
    app: &Ctx,
    org_id: i64,
    from: &str,
    to: &str,
) -> Result<Vec<store::LineRow>> {
    store::current_lines(&app.db, org_id, from, to).await
}
