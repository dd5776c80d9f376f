//! Reports: estimate and actual side by side per group and month, with budget status, as
//! JSON or CSV.

use std::collections::BTreeMap;

use chrono::{Datelike, Utc};
use serde::Serialize;

use super::Ctx;
use super::budgets::{self, Facts, Scope};
use super::service;
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal};
use crate::names::OrgName;

/// What a report groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Workspace,
    Blueprint,
    Service,
    Tag(String),
}

impl GroupBy {
    pub fn parse(text: &str) -> Option<GroupBy> {
        match text {
            "workspace" => Some(GroupBy::Workspace),
            "blueprint" => Some(GroupBy::Blueprint),
            "service" => Some(GroupBy::Service),
            _ => text
                .strip_prefix("tag:")
                .filter(|k| !k.is_empty())
                .map(|k| GroupBy::Tag(k.to_string())),
        }
    }

    fn name(&self) -> String {
        match self {
            GroupBy::Workspace => "workspace".into(),
            GroupBy::Blueprint => "blueprint".into(),
            GroupBy::Service => "service".into(),
            GroupBy::Tag(k) => format!("tag:{k}"),
        }
    }
}

/// A report's request.
#[derive(Debug, Clone)]
pub struct Request {
    pub from: String,
    pub to: String,
    pub group_by: GroupBy,
    /// `actual`, `estimate` or `both`.
    pub basis: String,
    /// `EffectiveCost` (default), `BilledCost` or `ListCost`.
    pub measure: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub group_by: String,
    pub basis: String,
    pub measure: String,
    pub currency: String,
    pub rows: Vec<Row>,
    /// Every budget's standing in each month.
    pub budgets: Vec<BudgetMonth>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub month: String,
    pub group: String,
    /// The monthly run-rate of the states current at the month's end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<f64>,
    /// Imported spend of the month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<f64>,
    /// `name:status` of the budgets scoped to this group (`ok`, `warning`, `over`).
    pub budget_status: String,
}

#[derive(Debug, Serialize)]
pub struct BudgetMonth {
    pub month: String,
    pub budget: String,
    pub scope: String,
    pub spend: f64,
    pub ratio: f64,
    pub status: String,
}

fn round(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn month(text: &str) -> Option<(i32, u32)> {
    let d = chrono::NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()?;
    (text.len() == 7).then(|| (d.year(), d.month()))
}

/// Months `from..=to` (at most 60).
fn months(from: &str, to: &str) -> Result<Vec<String>> {
    let bad = || Error::invalid("from and to are months, YYYY-MM, from <= to, at most 60 apart");
    let (mut y, mut m) = month(from).ok_or_else(bad)?;
    let end = month(to).ok_or_else(bad)?;
    let mut out = Vec::new();
    while (y, m) <= end {
        out.push(format!("{y:04}-{m:02}"));
        if out.len() > 60 {
            return Err(bad());
        }
        (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

fn scoped_to(scope: &Scope, group_by: &GroupBy, group: &str) -> bool {
    match (scope, group_by) {
        (Scope::Workspace(glob), GroupBy::Workspace) => glob.is_match(group),
        (Scope::Blueprint(name), GroupBy::Blueprint) => name == group,
        (Scope::Tag(k, v), GroupBy::Tag(key)) => k == key && v == group,
        _ => false,
    }
}

pub async fn report(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    req: Request,
) -> Result<Report> {
    let org_id = service::org_id(app, principal, org, Action::OrgRead).await?;
    if !["actual", "estimate", "both"].contains(&req.basis.as_str()) {
        return Err(Error::invalid("basis is actual, estimate or both"));
    }
    if !["EffectiveCost", "BilledCost", "ListCost"].contains(&req.measure.as_str()) {
        return Err(Error::invalid(
            "measure is EffectiveCost, BilledCost or ListCost",
        ));
    }
    let months = months(&req.from, &req.to)?;
    service::catch_up(app, Some(org_id)).await?;
    let facts = Facts::load(app, org_id).await?;
    let lines = service::lines(app, org_id, &req.from, &req.to).await?;
    let want_actual = req.basis != "estimate";
    let want_estimate = req.basis != "actual";
    let ws_name = |ws: Option<i64>, none: &str| {
        ws.and_then(|id| facts.names.get(&id).cloned())
            .unwrap_or_else(|| none.to_string())
    };
    let blueprint = |ws: Option<i64>| {
        ws.and_then(|id| facts.blueprints.get(&id).cloned())
            .unwrap_or_else(|| "(none)".to_string())
    };
    let now = this_month();
    let mut rows = Vec::new();
    let mut budget_months = Vec::new();
    let mut currency = None;
    for m in &months {
        let mut groups: BTreeMap<String, (Option<f64>, Option<f64>)> = BTreeMap::new();
        if want_actual {
            for line in lines.iter().filter(|l| &l.period == m) {
                currency.get_or_insert_with(|| line.currency.clone());
                let cost = match req.measure.as_str() {
                    "BilledCost" => line.billed_cost,
                    "ListCost" => line.list_cost,
                    _ => line.effective_cost,
                };
                let key = match &req.group_by {
                    GroupBy::Workspace => ws_name(line.workspace_id, "(unattributed)"),
                    GroupBy::Blueprint => blueprint(line.workspace_id),
                    GroupBy::Service => line.service.clone(),
                    GroupBy::Tag(k) => serde_json::from_str::<BTreeMap<String, String>>(&line.tags)
                        .ok()
                        .and_then(|t| t.get(k).cloned())
                        .unwrap_or_else(|| "(untagged)".into()),
                };
                let entry = groups.entry(key).or_default();
                *entry.1.get_or_insert(0.0) += cost;
            }
        }
        if want_estimate && *m <= now {
            let until = if *m == now {
                Utc::now()
            } else {
                budgets::month_end(m)
            };
            for (ws, (monthly, detail)) in service::estimates_at(app, org_id, until).await? {
                if let Some(d) = &detail {
                    currency.get_or_insert_with(|| d.currency.clone());
                }
                let mut add = |key: String, v: f64| {
                    let entry = groups.entry(key).or_default();
                    *entry.0.get_or_insert(0.0) += v;
                };
                match &req.group_by {
                    GroupBy::Workspace => add(ws_name(Some(ws), "(unknown)"), monthly),
                    GroupBy::Blueprint => add(blueprint(Some(ws)), monthly),
                    GroupBy::Service | GroupBy::Tag(_) => {
                        for r in detail.iter().flat_map(|d| d.resources.iter()) {
                            match &req.group_by {
                                GroupBy::Tag(k) => add(
                                    r.tags
                                        .get(k)
                                        .cloned()
                                        .unwrap_or_else(|| "(untagged)".into()),
                                    r.monthly,
                                ),
                                _ => {
                                    for c in &r.components {
                                        add(c.service.clone(), c.monthly);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let statuses = budgets::statuses(app, org_id, m).await?;
        for (group, (estimate, actual)) in groups {
            let budget_status = statuses
                .iter()
                .filter(|(_, scope, ..)| {
                    Scope::parse(scope).is_ok_and(|s| scoped_to(&s, &req.group_by, &group))
                })
                .map(|(name, _, _, _, status)| format!("{name}:{status}"))
                .collect::<Vec<_>>()
                .join(";");
            rows.push(Row {
                month: m.clone(),
                group,
                estimate: if want_estimate {
                    Some(round(estimate.unwrap_or(0.0)))
                } else {
                    None
                },
                actual: if want_actual {
                    Some(round(actual.unwrap_or(0.0)))
                } else {
                    None
                },
                budget_status,
            });
        }
        budget_months.extend(
            statuses
                .into_iter()
                .map(|(budget, scope, spend, ratio, status)| BudgetMonth {
                    month: m.clone(),
                    budget,
                    scope,
                    spend,
                    ratio,
                    status: status.into(),
                }),
        );
    }
    Ok(Report {
        from: req.from,
        to: req.to,
        group_by: req.group_by.name(),
        basis: req.basis,
        measure: req.measure,
        currency: currency.unwrap_or_else(|| "USD".into()),
        rows,
        budgets: budget_months,
    })
}

fn this_month() -> String {
    budgets::this_month()
}

/// The report's rows as CSV: `month,group,estimate,actual,currency,budget_status`.
pub fn to_csv(report: &Report) -> Result<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = [
        "month",
        report.group_by.as_str(),
        "estimate",
        "actual",
        "currency",
        "budget_status",
    ];
    let fail = |e: csv::Error| Error::Internal(anyhow::Error::from(e));
    out.write_record(header).map_err(fail)?;
    let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for row in &report.rows {
        out.write_record([
            row.month.as_str(),
            row.group.as_str(),
            &num(row.estimate),
            &num(row.actual),
            report.currency.as_str(),
            row.budget_status.as_str(),
        ])
        .map_err(fail)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| Error::Internal(anyhow::anyhow!("{e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Internal(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_span_years_and_refuse_bad_ranges() {
        assert_eq!(months("2024-11", "2025-02").unwrap().len(), 4);
        assert!(months("2025-02", "2024-11").is_err());
        assert!(months("2025-2", "2025-03").is_err());
    }
}
