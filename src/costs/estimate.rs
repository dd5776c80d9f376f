//! Estimates: the resources of a Terraform state or plan, each priced by the rules against a
//! catalogue, summed into a monthly and hourly run-rate. Pure: no database, no HTTP.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::catalogue::Catalogue;
use super::rules::{self, ComponentCost, HOURS_PER_MONTH, Memo, Outcome, Rules, Unpriced, Usage};

/// The catalogue an estimate used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CatalogueRef {
    /// The catalogue version: an import's id, or the sample's name.
    pub version: String,
    /// The built-in sample catalogue, not the operator's imported prices.
    pub sample: bool,
    pub published: Option<String>,
    pub label: String,
}

impl CatalogueRef {
    pub fn of(catalogue: &Catalogue) -> CatalogueRef {
        let label = if catalogue.sample {
            format!(
                "Sample prices built into Terrace (published {}); import your provider's price files for real figures",
                catalogue.published.as_deref().unwrap_or("unknown")
            )
        } else {
            format!("Imported catalogue version {}", catalogue.version)
        };
        CatalogueRef {
            version: catalogue.version.clone(),
            sample: catalogue.sample,
            published: catalogue.published.clone(),
            label,
        }
    }
}

/// One priced resource instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResourceCost {
    pub address: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub region: String,
    pub monthly: f64,
    pub hourly: f64,
    pub components: Vec<ComponentCost>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpriced_components: Vec<Unpriced>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// A resource nothing could be priced for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnpricedResource {
    pub address: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub reason: String,
}

/// The run-rate of a set of resources.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Estimate {
    pub catalogue: CatalogueRef,
    pub currency: String,
    pub monthly: f64,
    pub hourly: f64,
    pub resources: Vec<ResourceCost>,
    pub unpriced: Vec<UnpricedResource>,
    /// Resources of types that cost nothing by themselves (networks, policies, …).
    pub free: usize,
}

/// A resource instance to price.
#[derive(Debug, Clone)]
pub struct Instance {
    pub address: String,
    pub resource_type: String,
    /// `aws`, `azurerm`, `google`, … (the provider's type name).
    pub provider: String,
    pub attrs: Value,
}

/// What an estimate prices with.
pub struct Pricing<'a> {
    pub rules: &'a Rules,
    pub catalogue: &'a Catalogue,
    pub usage: &'a Usage,
    /// Regions the configuration gives per provider (from a plan's provider config).
    pub provider_regions: HashMap<String, String>,
}

fn provider_type(provider: &str) -> String {
    // `provider["registry.terraform.io/hashicorp/aws"]`, `provider["…/aws"].west`, or
    // `registry.terraform.io/hashicorp/aws`.
    let inner = provider
        .split('"')
        .nth(1)
        .unwrap_or(provider)
        .trim_end_matches(']');
    inner.rsplit('/').next().unwrap_or(inner).to_string()
}

fn index_suffix(key: &Value) -> String {
    match key {
        Value::Number(n) => format!("[{n}]"),
        Value::String(s) => format!("[{s:?}]"),
        _ => String::new(),
    }
}

/// The managed resource instances of a state file (format version 4).
pub fn state_instances(doc: &Value) -> Vec<Instance> {
    let mut out = Vec::new();
    for r in doc["resources"].as_array().into_iter().flatten() {
        if r["mode"].as_str() != Some("managed") {
            continue;
        }
        let (Some(ty), Some(name)) = (r["type"].as_str(), r["name"].as_str()) else {
            continue;
        };
        let base = match r["module"].as_str() {
            Some(m) => format!("{m}.{ty}.{name}"),
            None => format!("{ty}.{name}"),
        };
        let provider = provider_type(r["provider"].as_str().unwrap_or(""));
        for inst in r["instances"].as_array().into_iter().flatten() {
            out.push(Instance {
                address: format!("{base}{}", index_suffix(&inst["index_key"])),
                resource_type: ty.to_string(),
                provider: provider.clone(),
                attrs: inst["attributes"].clone(),
            });
        }
    }
    out
}

/// Every `id` and `arn` recorded in a state's resources (for attributing billing lines).
pub fn state_resource_ids(doc: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    for inst in state_instances(doc) {
        for key in ["id", "arn"] {
            if let Some(v) = inst.attrs[key].as_str().filter(|v| !v.is_empty()) {
                ids.push(v.to_string());
            }
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

/// The region of a resource: its own `region`, its ARN, its availability zone, its
/// location or zone (Azure, Google), the provider's configured region, or `fallback`.
pub fn region_of(
    inst: &Instance,
    provider_regions: &HashMap<String, String>,
    fallback: &str,
) -> String {
    let attrs = &inst.attrs;
    if let Some(r) = attrs["region"].as_str().filter(|r| !r.is_empty()) {
        return r.to_string();
    }
    if let Some(arn) = attrs["arn"].as_str() {
        let parts: Vec<&str> = arn.split(':').collect();
        if parts.len() > 4 && parts[0] == "arn" && !parts[3].is_empty() {
            return parts[3].to_string();
        }
    }
    if let Some(az) = attrs["availability_zone"].as_str().filter(|a| a.len() > 1) {
        return az
            .trim_end_matches(|c: char| c.is_ascii_lowercase())
            .to_string();
    }
    if let Some(location) = attrs["location"].as_str() {
        return location.to_lowercase().replace(' ', "");
    }
    if let Some(zone) = attrs["zone"].as_str() {
        return zone.rsplit_once('-').map_or(zone, |(r, _)| r).to_string();
    }
    if let Some(r) = provider_regions.get(&inst.provider) {
        return r.clone();
    }
    fallback.to_string()
}

fn tags_of(attrs: &Value) -> BTreeMap<String, String> {
    let source = if attrs["tags_all"].is_object() {
        &attrs["tags_all"]
    } else if attrs["tags"].is_object() {
        &attrs["tags"]
    } else {
        &attrs["labels"]
    };
    source
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Prices `instances`.
pub fn estimate(pricing: &Pricing<'_>, instances: &[Instance]) -> Estimate {
    let fallback = pricing.usage.region.as_deref().unwrap_or("us-east-1");
    let mut memo = Memo::new();
    let mut resources = Vec::new();
    let mut unpriced = Vec::new();
    let mut free = 0;
    let mut currency = None;
    for inst in instances {
        let region = region_of(inst, &pricing.provider_regions, fallback);
        match rules::price(
            pricing.rules,
            pricing.catalogue,
            pricing.usage,
            &inst.resource_type,
            &inst.attrs,
            &region,
            &mut memo,
        ) {
            Outcome::Free => free += 1,
            Outcome::NoRule => unpriced.push(UnpricedResource {
                address: inst.address.clone(),
                resource_type: inst.resource_type.clone(),
                reason: format!("no pricing rule for {}", inst.resource_type),
            }),
            Outcome::Priced {
                components,
                unpriced: missing,
                currency: c,
            } => {
                if components.is_empty() {
                    unpriced.push(UnpricedResource {
                        address: inst.address.clone(),
                        resource_type: inst.resource_type.clone(),
                        reason: missing
                            .iter()
                            .map(|u| format!("{}: {}", u.name, u.reason))
                            .collect::<Vec<_>>()
                            .join("; "),
                    });
                    continue;
                }
                if currency.is_none() {
                    currency = c;
                }
                let monthly: f64 = components.iter().map(|c| c.monthly).sum();
                resources.push(ResourceCost {
                    address: inst.address.clone(),
                    resource_type: inst.resource_type.clone(),
                    region,
                    monthly: round(monthly),
                    hourly: round(monthly / HOURS_PER_MONTH),
                    components,
                    unpriced_components: missing,
                    tags: tags_of(&inst.attrs),
                });
            }
        }
    }
    let monthly: f64 = resources.iter().map(|r| r.monthly).sum();
    Estimate {
        catalogue: CatalogueRef::of(pricing.catalogue),
        currency: currency.unwrap_or_else(|| "USD".into()),
        monthly: round(monthly),
        hourly: round(monthly / HOURS_PER_MONTH),
        resources,
        unpriced,
        free,
    }
}

/// One resource's change in cost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResourceDelta {
    pub address: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub actions: Vec<String>,
    /// Monthly cost before and after; `null` where the resource is absent or unpriced.
    pub before: Option<f64>,
    pub after: Option<f64>,
    pub delta: f64,
}

/// A plan's estimate: the run-rate before and after, and the difference.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanEstimate {
    pub catalogue: CatalogueRef,
    pub currency: String,
    pub before: Totals,
    pub after: Totals,
    pub delta: Totals,
    pub resources: Vec<ResourceDelta>,
    /// Resources (after the plan) that could not be priced.
    pub unpriced: Vec<UnpricedResource>,
    /// The priced resources after the plan, with their components.
    pub priced: Vec<ResourceCost>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    pub monthly: f64,
    pub hourly: f64,
}

impl Totals {
    fn of(monthly: f64) -> Totals {
        Totals {
            monthly: round(monthly),
            hourly: round(monthly / HOURS_PER_MONTH),
        }
    }
}

/// Regions set as constants in a plan's provider configurations, by provider type.
pub fn plan_regions(plan: &Value) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (_, cfg) in plan["configuration"]["provider_config"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let name = cfg["name"].as_str().unwrap_or("");
        let full = cfg["full_name"].as_str().unwrap_or(name);
        if let Some(region) = cfg["expressions"]["region"]["constant_value"].as_str()
            && cfg["alias"].is_null()
        {
            out.insert(provider_type(full), region.to_string());
        }
    }
    out
}

/// Whether `plan` looks like `terraform show -json` of a plan.
pub fn is_plan(plan: &Value) -> bool {
    plan["resource_changes"].is_array() || plan["planned_values"].is_object()
}

/// Prices the resources of `plan` (`terraform show -json` of a saved plan) before and after.
pub fn estimate_plan(pricing: &Pricing<'_>, plan: &Value) -> PlanEstimate {
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut actions_of = BTreeMap::new();
    for rc in plan["resource_changes"].as_array().into_iter().flatten() {
        if rc["mode"].as_str().unwrap_or("managed") != "managed" {
            continue;
        }
        let address = rc["address"].as_str().unwrap_or("").to_string();
        let ty = rc["type"].as_str().unwrap_or("").to_string();
        let provider = provider_type(rc["provider_name"].as_str().unwrap_or(""));
        let actions: Vec<String> = rc["change"]["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        if actions == ["read"] {
            continue;
        }
        let make = |attrs: &Value| Instance {
            address: address.clone(),
            resource_type: ty.clone(),
            provider: provider.clone(),
            attrs: attrs.clone(),
        };
        if rc["change"]["before"].is_object() {
            before.push(make(&rc["change"]["before"]));
        }
        if rc["change"]["after"].is_object() && !actions.iter().all(|a| a == "delete") {
            after.push(make(&rc["change"]["after"]));
        }
        actions_of.insert(address.clone(), (ty, actions));
    }
    let before_est = estimate(pricing, &before);
    let after_est = estimate(pricing, &after);
    let monthly_of = |e: &Estimate| -> HashMap<String, f64> {
        e.resources
            .iter()
            .map(|r| (r.address.clone(), r.monthly))
            .collect()
    };
    let (b, a) = (monthly_of(&before_est), monthly_of(&after_est));
    let resources = actions_of
        .into_iter()
        .filter(|(_, (_, actions))| actions != &["no-op"])
        .map(|(address, (ty, actions))| {
            let (before, after) = (b.get(&address).copied(), a.get(&address).copied());
            ResourceDelta {
                delta: round(after.unwrap_or(0.0) - before.unwrap_or(0.0)),
                address,
                resource_type: ty,
                actions,
                before,
                after,
            }
        })
        .collect();
    PlanEstimate {
        catalogue: after_est.catalogue.clone(),
        currency: after_est.currency.clone(),
        before: Totals::of(before_est.monthly),
        after: Totals::of(after_est.monthly),
        delta: Totals::of(after_est.monthly - before_est.monthly),
        resources,
        unpriced: after_est.unpriced,
        priced: after_est.resources,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn regions_come_from_the_resource_then_the_provider_then_the_default() {
        let inst = |attrs: Value| Instance {
            address: "a.b".into(),
            resource_type: "aws_instance".into(),
            provider: "aws".into(),
            attrs,
        };
        let none = HashMap::new();
        let arn = inst(json!({"arn": "arn:aws:ec2:eu-west-1:1:instance/i-1"}));
        assert_eq!(region_of(&arn, &none, "us-east-1"), "eu-west-1");
        let az = inst(json!({"availability_zone": "us-west-2b"}));
        assert_eq!(region_of(&az, &none, "us-east-1"), "us-west-2");
        let regions = HashMap::from([("aws".to_string(), "eu-west-1".to_string())]);
        assert_eq!(region_of(&inst(json!({})), &regions, "x"), "eu-west-1");
        assert_eq!(region_of(&inst(json!({})), &none, "x"), "x");
    }

    #[test]
    fn a_plan_has_a_delta_per_resource() {
        let rules = Rules::load(None).unwrap();
        let catalogue = Catalogue::sample();
        let usage = Usage::parse(rules::BUILT_IN_USAGE).unwrap();
        let pricing = Pricing {
            rules: &rules,
            catalogue: &catalogue,
            usage: &usage,
            provider_regions: HashMap::new(),
        };
        let plan = json!({"resource_changes": [
            {"address": "aws_instance.a", "type": "aws_instance", "mode": "managed",
             "provider_name": "registry.terraform.io/hashicorp/aws",
             "change": {"actions": ["update"], "before": {"instance_type": "t3.micro"},
                        "after": {"instance_type": "t3.medium"}}},
            {"address": "aws_thing.b", "type": "aws_thing", "mode": "managed",
             "change": {"actions": ["create"], "before": null, "after": {}}}
        ]});
        let e = estimate_plan(&pricing, &plan);
        assert!((e.delta.monthly - (0.0416 - 0.0104) * 730.0).abs() < 1e-6);
        assert_eq!(e.unpriced.len(), 1);
        assert_eq!(e.resources.len(), 2);
    }
}
