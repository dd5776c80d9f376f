//! Budgets: a scope (`org`, `workspace:GLOB`, `blueprint:NAME`, `tag:KEY=VALUE`), a monthly
//! amount, thresholds and a basis (`actual`, `forecast` = actual so far extrapolated to the
//! month's end, `estimate` = the run-rate of the current states). Evaluated after every
//! import and run; each threshold fires once per period, as a `budget:threshold` event. The
//! gate stops a run whose estimated delta takes an `estimate` budget over 100 %.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, Utc};
use globset::{Glob, GlobMatcher};

use super::Ctx;
use super::estimate::{Estimate, PlanEstimate};
use super::service;
use super::store::{self, BudgetRow, LineRow};
use super::views;
use crate::deployments::phase::Gate;
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal};
use crate::infra::metrics::{BudgetLabels, CostLabels};
use crate::infra::notes::note_operation;
use crate::names::OrgName;
use crate::pagination::{Page, Paginated};

pub const BASES: [&str; 3] = ["actual", "forecast", "estimate"];

/// What a budget covers.
#[derive(Debug, Clone)]
pub enum Scope {
    Org,
    Workspace(GlobMatcher),
    Blueprint(String),
    Tag(String, String),
}

impl Scope {
    pub fn parse(text: &str) -> std::result::Result<Scope, String> {
        if text == "org" {
            return Ok(Scope::Org);
        }
        let bad = || {
            format!("scope {text:?} must be org, workspace:GLOB, blueprint:NAME or tag:KEY=VALUE")
        };
        let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match kind {
            "workspace" => Glob::new(rest)
                .map(|g| Scope::Workspace(g.compile_matcher()))
                .map_err(|e| format!("scope {text:?}: {e}")),
            "blueprint" => Ok(Scope::Blueprint(rest.to_string())),
            "tag" => {
                let (k, v) = rest.split_once('=').ok_or_else(bad)?;
                Ok(Scope::Tag(k.to_string(), v.to_string()))
            }
            _ => Err(bad()),
        }
    }
}

/// What evaluating an org's budgets needs, loaded once.
pub(super) struct Facts {
    pub(super) names: HashMap<i64, String>,
    pub(super) blueprints: HashMap<i64, String>,
}

impl Facts {
    pub(super) async fn load(app: &Ctx, org_id: i64) -> Result<Facts> {
        Ok(Facts {
            names: crate::state::feed::workspaces(&app.state, org_id)
                .await?
                .into_iter()
                .collect(),
            blueprints: crate::deployments::phase::blueprints_by_workspace(
                &app.deployments,
                org_id,
            )
            .await?
            .into_iter()
            .collect(),
        })
    }

    /// Whether `scope` covers the workspace `ws` as a whole (tag scopes never do).
    fn covers(&self, scope: &Scope, ws: Option<i64>) -> bool {
        match scope {
            Scope::Org => true,
            Scope::Workspace(glob) => ws
                .and_then(|id| self.names.get(&id))
                .is_some_and(|name| glob.is_match(name)),
            Scope::Blueprint(name) => ws
                .and_then(|id| self.blueprints.get(&id))
                .is_some_and(|b| b == name),
            Scope::Tag(..) => false,
        }
    }
}

fn tags_match(tags: &str, key: &str, value: &str) -> bool {
    serde_json::from_str::<BTreeMap<String, String>>(tags)
        .ok()
        .is_some_and(|t| t.get(key).is_some_and(|v| v == value))
}

/// A budget's measure of the billing lines: EffectiveCost.
fn line_cost(line: &LineRow) -> f64 {
    line.effective_cost
}

fn days_in_month(period: &str) -> i64 {
    let Ok(first) = chrono::NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d") else {
        return 30;
    };
    let next = if first.month() == 12 {
        chrono::NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        chrono::NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    };
    next.map_or(30, |n| (n - first).num_days())
}

/// A budget's spend in `period` on its basis.
fn spend(
    budget: &BudgetRow,
    scope: &Scope,
    facts: &Facts,
    lines: &[LineRow],
    estimates: &HashMap<i64, (f64, Option<Estimate>)>,
    period: &str,
) -> f64 {
    match budget.basis.as_str() {
        "estimate" => estimate_spend(scope, facts, estimates),
        basis => {
            let mut total = 0.0;
            let mut last_day = 0;
            for line in lines
                .iter()
                .filter(|l| l.period == period && l.currency == budget.currency)
            {
                let covered = match scope {
                    Scope::Tag(k, v) => tags_match(&line.tags, k, v),
                    other => facts.covers(other, line.workspace_id),
                };
                if covered {
                    total += line_cost(line);
                    last_day = last_day.max(line.last_day);
                }
            }
            if basis == "forecast" && last_day > 0 {
                total * days_in_month(period) as f64 / last_day as f64
            } else {
                total
            }
        }
    }
}

fn estimate_spend(
    scope: &Scope,
    facts: &Facts,
    estimates: &HashMap<i64, (f64, Option<Estimate>)>,
) -> f64 {
    estimates
        .iter()
        .map(|(ws, (monthly, detail))| match scope {
            Scope::Tag(k, v) => detail.as_ref().map_or(0.0, |d| {
                d.resources
                    .iter()
                    .filter(|r| r.tags.get(k).is_some_and(|t| t == v))
                    .map(|r| r.monthly)
                    .sum()
            }),
            other if facts.covers(other, Some(*ws)) => *monthly,
            _ => 0.0,
        })
        .sum()
}

fn thresholds_of(budget: &BudgetRow) -> Vec<f64> {
    serde_json::from_str(&budget.thresholds).unwrap_or_default()
}

/// `ok`, `warning` past the lowest threshold, `over` past 100 %.
pub fn status_of(ratio: f64, thresholds: &[f64]) -> &'static str {
    let lowest = thresholds.iter().copied().fold(f64::INFINITY, f64::min);
    if ratio >= 1.0 {
        "over"
    } else if ratio * 100.0 >= lowest {
        "warning"
    } else {
        "ok"
    }
}

pub fn this_month() -> String {
    Utc::now().format("%Y-%m").to_string()
}

/// The end of `period` (`YYYY-MM`), for estimates current then.
pub fn month_end(period: &str) -> chrono::DateTime<Utc> {
    let first = chrono::NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d")
        .unwrap_or_else(|_| Utc::now().date_naive());
    let end = first + chrono::Duration::days(days_in_month(period));
    end.and_hms_opt(0, 0, 0)
        .map_or_else(Utc::now, |t| t.and_utc())
}

/// Each budget's spend and ratio in `period`, by budget id.
async fn standing(
    app: &Ctx,
    org_id: i64,
    budgets: &[BudgetRow],
    period: &str,
    facts: &Facts,
) -> Result<HashMap<i64, (f64, f64)>> {
    let lines = service::lines(app, org_id, period, period).await?;
    let until = if *period >= *this_month() {
        Utc::now()
    } else {
        month_end(period)
    };
    let estimates = service::estimates_at(app, org_id, until).await?;
    let mut out = HashMap::new();
    for budget in budgets {
        let Ok(scope) = Scope::parse(&budget.scope) else {
            continue;
        };
        let spent = spend(budget, &scope, facts, &lines, &estimates, period);
        let ratio = if budget.amount > 0.0 {
            spent / budget.amount
        } else {
            0.0
        };
        out.insert(budget.id, (spent, ratio));
    }
    Ok(out)
}

/// Evaluates every budget of the org for this month and `periods`: thresholds crossed for
/// the first time in a period are recorded and raised as `budget:threshold` events; this
/// month's ratios go to the gauges.
pub async fn evaluate(app: &Ctx, org_id: i64, periods: &[String]) -> Result<()> {
    let budgets = store::budgets(&app.db, org_id).await?;
    if budgets.is_empty() {
        return Ok(());
    }
    let facts = Facts::load(app, org_id).await?;
    let current = this_month();
    let mut all: Vec<String> = periods.to_vec();
    all.push(current.clone());
    all.sort();
    all.dedup();
    let org_name = org_name(app, org_id).await?;
    for period in &all {
        let standing = standing(app, org_id, &budgets, period, &facts).await?;
        for budget in &budgets {
            let Some(&(spent, ratio)) = standing.get(&budget.id) else {
                continue;
            };
            if *period == current {
                app.metrics
                    .budget_spend_ratio
                    .get_or_create(&BudgetLabels {
                        org: org_name.clone(),
                        budget: budget.name.clone(),
                        basis: budget.basis.clone(),
                    })
                    .set(ratio);
            }
            for threshold in thresholds_of(budget) {
                if ratio * 100.0 + 1e-9 < threshold {
                    continue;
                }
                if !store::record_alert(&app.db, budget.id, period, threshold, spent, ratio).await?
                {
                    continue;
                }
                let workspace = match budget.scope.strip_prefix("workspace:") {
                    Some(name) if !name.contains(['*', '?', '[', '{']) => Some(name.to_string()),
                    _ => None,
                };
                tracing::info!(budget = %budget.name, period, threshold, ratio, "budget threshold crossed");
                crate::notifications::emit(
                    app,
                    crate::notifications::Event {
                        org_id,
                        kind: "budget:threshold",
                        workspace,
                        payload: serde_json::json!({
                            "org": org_name,
                            "budget": budget.name,
                            "scope": budget.scope,
                            "basis": budget.basis,
                            "period": period,
                            "threshold": threshold,
                            "amount": budget.amount,
                            "currency": budget.currency,
                            "spend": round2(spent),
                            "ratio": ratio,
                        }),
                    },
                )
                .await?;
            }
        }
    }
    Ok(())
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

async fn org_name(app: &Ctx, org_id: i64) -> Result<String> {
    Ok(crate::identity::orgs::all_orgs(&app.db)
        .await?
        .into_iter()
        .find(|(id, _)| *id == org_id)
        .map(|(_, n)| n)
        .unwrap_or_else(|| org_id.to_string()))
}

/// The budget gate: stops the run when its workspace is covered by an `estimate` budget that
/// the current run-rate plus the plan's delta takes over 100 %.
pub async fn gate(app: &Ctx, org_id: i64, workspace_id: i64, plan: &PlanEstimate) -> Result<Gate> {
    let budgets: Vec<BudgetRow> = store::budgets(&app.db, org_id)
        .await?
        .into_iter()
        .filter(|b| b.basis == "estimate")
        .collect();
    if budgets.is_empty() {
        return Ok(Gate::Pass);
    }
    let facts = Facts::load(app, org_id).await?;
    let estimates = service::estimates_at(app, org_id, Utc::now()).await?;
    let mut over = Vec::new();
    for budget in &budgets {
        let Ok(scope) = Scope::parse(&budget.scope) else {
            continue;
        };
        let delta = match &scope {
            Scope::Tag(k, v) => {
                let after: f64 = plan
                    .priced
                    .iter()
                    .filter(|r| r.tags.get(k).is_some_and(|t| t == v))
                    .map(|r| r.monthly)
                    .sum();
                let before = estimates
                    .get(&workspace_id)
                    .and_then(|(_, d)| d.as_ref())
                    .map_or(0.0, |d| {
                        d.resources
                            .iter()
                            .filter(|r| r.tags.get(k).is_some_and(|t| t == v))
                            .map(|r| r.monthly)
                            .sum()
                    });
                after - before
            }
            other if facts.covers(other, Some(workspace_id)) => plan.delta.monthly,
            _ => continue,
        };
        let projected = estimate_spend(&scope, &facts, &estimates) + delta;
        if delta > 0.0 && projected > budget.amount {
            over.push(format!(
                "budget {} ({}): estimated {:.2} {} a month after this run, over its {:.2}",
                budget.name, budget.scope, projected, budget.currency, budget.amount
            ));
        }
    }
    Ok(if over.is_empty() {
        Gate::Pass
    } else {
        Gate::Stop(over.join("; "))
    })
}

// ---- the API ----

pub async fn create(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    req: views::NewBudget,
) -> Result<views::Budget> {
    let org_id = service::org_id(app, principal, org, Action::OrgAdmin).await?;
    note_operation("budget:create", format!("budget:{}", req.name));
    let mut problems = Vec::new();
    if req.name.is_empty()
        || req.name.len() > 100
        || !req
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        problems.push("name: 1 to 100 letters, digits, '-', '_' or '.'".to_string());
    }
    if let Err(e) = Scope::parse(&req.scope) {
        problems.push(format!("scope: {e}"));
    }
    if !(req.amount.is_finite() && req.amount > 0.0) {
        problems.push("amount: a positive number".into());
    }
    let period = req.period.unwrap_or_else(|| "monthly".into());
    if period != "monthly" {
        problems.push("period: only monthly".into());
    }
    if !BASES.contains(&req.basis.as_str()) {
        problems.push("basis: actual, forecast or estimate".into());
    }
    let mut thresholds = req.thresholds.unwrap_or_else(|| vec![50.0, 80.0, 100.0]);
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    if thresholds.is_empty()
        || thresholds
            .iter()
            .any(|t| !(t.is_finite() && *t > 0.0 && *t <= 1000.0))
    {
        problems.push("thresholds: percentages between 0 and 1000".into());
    }
    let currency = req.currency.unwrap_or_else(|| "USD".into());
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        problems.push("currency: a three-letter code such as USD".into());
    }
    if !problems.is_empty() {
        return Err(Error::Unprocessable(problems));
    }
    store::insert_budget(
        &app.db,
        store::NewBudget {
            org_id,
            name: &req.name,
            scope: &req.scope,
            amount: req.amount,
            currency: &currency,
            period: &period,
            thresholds: &serde_json::to_string(&thresholds).map_err(anyhow::Error::from)?,
            basis: &req.basis,
            created_by: &principal.actor(),
        },
    )
    .await?;
    service::catch_up(app, Some(org_id)).await?;
    evaluate(app, org_id, &[]).await?;
    show(app, principal, org, &req.name).await
}

async fn view(app: &Ctx, budget: BudgetRow, current: Option<(f64, f64)>) -> Result<views::Budget> {
    let thresholds = thresholds_of(&budget);
    let alerts = store::alerts(&app.db, budget.id).await?;
    Ok(views::Budget {
        current: current.map(|(spend, ratio)| views::BudgetStatus {
            period: this_month(),
            spend: round2(spend),
            ratio,
            status: status_of(ratio, &thresholds).into(),
        }),
        alerts: alerts
            .into_iter()
            .map(|a| views::Alert {
                period: a.period,
                threshold: a.threshold,
                spend: round2(a.spend),
                ratio: a.ratio,
                fired_at: a.fired_at,
            })
            .collect(),
        thresholds,
        name: budget.name,
        scope: budget.scope,
        amount: budget.amount,
        currency: budget.currency,
        period: budget.period,
        basis: budget.basis,
        created_at: budget.created_at,
        created_by: budget.created_by,
    })
}

pub async fn list(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    page: Page,
) -> Result<Paginated<views::Budget>> {
    let org_id = service::org_id(app, principal, org, Action::OrgRead).await?;
    let budgets = store::budgets(&app.db, org_id).await?;
    let facts = Facts::load(app, org_id).await?;
    let standing = standing(app, org_id, &budgets, &this_month(), &facts).await?;
    let mut out = Vec::new();
    for budget in budgets
        .into_iter()
        .skip(usize::try_from(page.offset).unwrap_or(0))
        .take(usize::try_from(page.fetch_limit()).unwrap_or(0))
    {
        let current = standing.get(&budget.id).copied();
        out.push(view(app, budget, current).await?);
    }
    Ok(Paginated::new(out, page))
}

pub async fn show(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &str,
) -> Result<views::Budget> {
    let org_id = service::org_id(app, principal, org, Action::OrgRead).await?;
    let budgets: Vec<BudgetRow> = store::budgets(&app.db, org_id)
        .await?
        .into_iter()
        .filter(|b| b.name == name)
        .collect();
    let facts = Facts::load(app, org_id).await?;
    let standing = standing(app, org_id, &budgets, &this_month(), &facts).await?;
    let budget = budgets
        .into_iter()
        .next()
        .ok_or(Error::NotFound("budget"))?;
    let current = standing.get(&budget.id).copied();
    view(app, budget, current).await
}

pub async fn delete(app: &Ctx, principal: &Principal, org: &OrgName, name: &str) -> Result<()> {
    let org_id = service::org_id(app, principal, org, Action::OrgAdmin).await?;
    note_operation("budget:delete", format!("budget:{name}"));
    if !store::delete_budget(&app.db, org_id, name).await? {
        return Err(Error::NotFound("budget"));
    }
    Ok(())
}

/// Budget statuses of `period` for the report: (budget name, scope, spend, ratio, status).
pub(super) async fn statuses(
    app: &Ctx,
    org_id: i64,
    period: &str,
) -> Result<Vec<(String, String, f64, f64, &'static str)>> {
    let budgets = store::budgets(&app.db, org_id).await?;
    if budgets.is_empty() {
        return Ok(Vec::new());
    }
    let facts = Facts::load(app, org_id).await?;
    let standing = standing(app, org_id, &budgets, period, &facts).await?;
    Ok(budgets
        .into_iter()
        .filter_map(|b| {
            let (spend, ratio) = *standing.get(&b.id)?;
            let status = status_of(ratio, &thresholds_of(&b));
            Some((b.name, b.scope, round2(spend), ratio, status))
        })
        .collect())
}

/// Sets the cost gauges of every org: budgets' ratios and workspaces' monthly costs.
pub async fn refresh_gauges(app: &Ctx) -> Result<()> {
    let period = this_month();
    for (org_id, org) in crate::identity::orgs::all_orgs(&app.db).await? {
        let estimates = service::estimates_at(app, org_id, Utc::now()).await?;
        let lines = service::lines(app, org_id, &period, &period).await?;
        let budgets = store::budgets(&app.db, org_id).await?;
        if estimates.is_empty() && lines.is_empty() && budgets.is_empty() {
            continue;
        }
        let facts = Facts::load(app, org_id).await?;
        let name_of = |ws: Option<i64>| {
            ws.and_then(|id| facts.names.get(&id).cloned())
                .unwrap_or_else(|| "(unattributed)".into())
        };
        for (ws, (monthly, _)) in &estimates {
            app.metrics
                .monthly_cost
                .get_or_create(&CostLabels {
                    org: org.clone(),
                    workspace: name_of(Some(*ws)),
                    basis: "estimate".into(),
                })
                .set(*monthly);
        }
        let mut actual: HashMap<String, f64> = HashMap::new();
        for line in &lines {
            *actual.entry(name_of(line.workspace_id)).or_default() += line_cost(line);
        }
        for (workspace, total) in actual {
            app.metrics
                .monthly_cost
                .get_or_create(&CostLabels {
                    org: org.clone(),
                    workspace,
                    basis: "actual".into(),
                })
                .set(total);
        }
        let standing = standing(app, org_id, &budgets, &period, &facts).await?;
        for budget in &budgets {
            if let Some(&(_, ratio)) = standing.get(&budget.id) {
                app.metrics
                    .budget_spend_ratio
                    .get_or_create(&BudgetLabels {
                        org: org.clone(),
                        budget: budget.name.clone(),
                        basis: budget.basis.clone(),
                    })
                    .set(ratio);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_refuse_nonsense() {
        assert!(matches!(Scope::parse("org"), Ok(Scope::Org)));
        assert!(matches!(
            Scope::parse("workspace:prod-*"),
            Ok(Scope::Workspace(_))
        ));
        assert!(
            matches!(Scope::parse("tag:team=web"), Ok(Scope::Tag(k, v)) if k == "team" && v == "web")
        );
        assert!(Scope::parse("tag:team").is_err());
        assert!(Scope::parse("planet:x").is_err());
        assert_eq!(days_in_month("2024-02"), 29);
        assert_eq!(status_of(0.85, &[50.0, 80.0, 100.0]), "warning");
        assert_eq!(status_of(1.0, &[50.0]), "over");
    }
}
