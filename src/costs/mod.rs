//! Costs: a versioned price catalogue (imported offline, or the built-in sample), pricing
//! rules as data, run-rate estimates of states and plans (one kept per state version, so a
//! workspace's cost over time is a query), actual spend from FOCUS billing exports attributed
//! to workspaces, budgets with thresholds (raised as `budget:threshold` notification events)
//! and a budget gate in runs, Prometheus gauges and reports.
//!
//! Layers: `routes` → `service`, `budgets`, `report` (rules, authorization) → `store` (SQL).
//! `catalogue` (import formats), `rules`, `estimate` and `focus` are pure. Runs get their
//! cost phase through `deployments::phase::PlanCheck`, which this feature implements and the
//! composition root registers: deployments, below costs, never names it.

pub mod blueprint;
pub mod budgets;
pub mod catalogue;
pub mod estimate;
pub mod focus;
pub mod report;
mod routes;
pub mod rules;
pub mod service;
mod store;
pub mod views;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use routes::routes;

use self::catalogue::Catalogue;
use self::rules::{Rules, Usage};

/// What the operator configured for costs, parsed.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The built-in pricing rules with the operator's on top.
    pub rules: Arc<Rules>,
    /// Usage amounts and the default region.
    pub usage: Arc<Usage>,
    /// The tag naming a billing line's workspace when its resource is in no state.
    pub attribution_tag: String,
}

impl Settings {
    /// Parses the operator's rules and usage files (their text), over the built-in ones.
    pub fn load(
        rules: Option<&str>,
        usage: Option<&str>,
        attribution_tag: &str,
    ) -> anyhow::Result<Settings> {
        Ok(Settings {
            rules: Arc::new(Rules::load(rules)?),
            usage: Arc::new(Usage::parse(usage.unwrap_or(rules::BUILT_IN_USAGE))?),
            attribution_tag: attribution_tag.to_string(),
        })
    }
}

impl Default for Settings {
    /// The built-in rules and usage (a unit test proves they parse).
    fn default() -> Settings {
        Settings::load(None, None, "terrace-workspace").unwrap_or_else(|e| {
            tracing::error!(error = %e, "the built-in pricing rules do not parse");
            Settings {
                rules: Arc::default(),
                usage: Arc::default(),
                attribution_tag: "terrace-workspace".into(),
            }
        })
    }
}

/// A catalogue in memory and the id of its version.
type CachedCatalogue = (i64, Arc<Catalogue>);

/// The costs feature's state.
#[derive(Clone)]
pub struct Ctx {
    pub identity: crate::identity::Ctx,
    pub state: crate::state::Ctx,
    pub deployments: crate::deployments::Ctx,
    pub rules: Arc<Rules>,
    pub usage: Arc<Usage>,
    pub attribution_tag: Arc<str>,
    pub sample: Arc<Catalogue>,
    /// Each org's newest imported catalogue, by org id.
    catalogues: Arc<Mutex<HashMap<i64, CachedCatalogue>>>,
    /// How far the cost history got: every state version up to this id is estimated (by
    /// org id; `None`: of every org). See `service::catch_up`.
    history_marks: Arc<Mutex<HashMap<Option<i64>, i64>>>,
}

impl Ctx {
    pub fn new(deployments: &crate::deployments::Ctx, settings: &Settings) -> Ctx {
        Ctx {
            identity: deployments.state.identity.clone(),
            state: deployments.state.clone(),
            deployments: deployments.clone(),
            rules: settings.rules.clone(),
            usage: settings.usage.clone(),
            attribution_tag: settings.attribution_tag.as_str().into(),
            sample: Arc::new(Catalogue::sample()),
            catalogues: Arc::default(),
            history_marks: Arc::default(),
        }
    }

    /// Where the cost history of `org_id` (or of all orgs) may start.
    fn history_mark(&self, org_id: Option<i64>) -> i64 {
        let marks = self
            .history_marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let all = marks.get(&None).copied().unwrap_or(0);
        org_id
            .and_then(|org| marks.get(&Some(org)).copied())
            .map_or(all, |org| org.max(all))
    }

    fn set_history_mark(&self, org_id: Option<i64>, id: i64) {
        let mut marks = self
            .history_marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mark = marks.entry(org_id).or_insert(0);
        *mark = (*mark).max(id);
    }

    fn cached_catalogue(&self, org_id: i64, id: i64) -> Option<Arc<Catalogue>> {
        let cache = self
            .catalogues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(&org_id)
            .filter(|(cached, _)| *cached == id)
            .map(|(_, c)| c.clone())
    }

    fn cache_catalogue(&self, org_id: i64, id: i64, catalogue: Arc<Catalogue>) {
        self.catalogues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(org_id, (id, catalogue));
    }
}

// Not derived: the deployments state holds this one as its plan check.
impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("costs::Ctx")
            .field("attribution_tag", &self.attribution_tag)
            .finish_non_exhaustive()
    }
}

crate::identity::feature_ctx!(Ctx);

/// The cost phase of runs: the plan is estimated, stored on the run, and checked against the
/// org's `estimate` budgets.
impl crate::deployments::phase::PlanCheck for Ctx {
    fn check<'a>(
        &'a self,
        planned: crate::deployments::phase::Planned<'a>,
    ) -> crate::deployments::phase::CheckFuture<'a> {
        Box::pin(service::check_plan(self, planned))
    }
}
