//! Pricing rules as data: a resource type and its attributes map to catalogue lookups, each
//! with an hourly, monthly or usage quantity. The rules built into Terrace (`data/rules.toml`)
//! come first; an operator's file (setting `cost_rules_file`) adds types or replaces them.
//! Usage amounts come from the usage file (`data/usage.toml`, setting `cost_usage_file`) and
//! per-workspace settings. Pure: no database, no HTTP.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::catalogue::{Catalogue, Price};

/// Hours in a month, for monthly run-rates of hourly prices.
pub const HOURS_PER_MONTH: f64 = 730.0;

pub const BUILT_IN_RULES: &str = include_str!("data/rules.toml");
pub const BUILT_IN_USAGE: &str = include_str!("data/usage.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    free: Vec<String>,
    #[serde(default, rename = "resource")]
    resources: Vec<Rule>,
}

/// How one resource type is priced.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(rename = "type")]
    pub resource_type: String,
    #[serde(rename = "component")]
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Quantity {
    Hourly,
    Monthly,
    Usage,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub name: String,
    pub quantity: Quantity,
    /// How many (a template): instances for `hourly`, units for `monthly`. Default 1.
    #[serde(default)]
    pub amount: Option<String>,
    /// The usage key (`<type>.<key>` in usage settings) of a `usage` component.
    #[serde(default)]
    pub usage: Option<String>,
    #[serde(rename = "lookup")]
    pub lookups: Vec<Lookup>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    pub service: String,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(rename = "match", default)]
    pub matches: BTreeMap<String, MatchValue>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MatchValue {
    Template(String),
    Map {
        attr: String,
        map: BTreeMap<String, String>,
        #[serde(default)]
        default: Option<String>,
    },
}

/// Every rule in force.
#[derive(Debug, Default)]
pub struct Rules {
    by_type: HashMap<String, Rule>,
    free: HashSet<String>,
}

impl Rules {
    /// The built-in rules, then `extra` (an operator's file) over them.
    pub fn load(extra: Option<&str>) -> anyhow::Result<Rules> {
        let mut rules = Rules::default();
        rules.add(BUILT_IN_RULES)?;
        if let Some(extra) = extra {
            rules.add(extra)?;
        }
        Ok(rules)
    }

    fn add(&mut self, text: &str) -> anyhow::Result<()> {
        let file: RulesFile = toml::from_str(text)?;
        self.free.extend(file.free);
        for rule in file.resources {
            if rule.components.iter().any(|c| c.lookups.is_empty()) {
                anyhow::bail!("{}: every component needs a lookup", rule.resource_type);
            }
            if rule
                .components
                .iter()
                .any(|c| c.quantity == Quantity::Usage && c.usage.is_none())
            {
                anyhow::bail!(
                    "{}: a usage component names its usage key",
                    rule.resource_type
                );
            }
            self.free.remove(&rule.resource_type);
            self.by_type.insert(rule.resource_type.clone(), rule);
        }
        Ok(())
    }

    pub fn rule(&self, resource_type: &str) -> Option<&Rule> {
        self.by_type.get(resource_type)
    }

    pub fn is_free(&self, resource_type: &str) -> bool {
        self.free.contains(resource_type)
    }
}

/// Usage amounts and the fallback region.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default)]
    pub usage: BTreeMap<String, f64>,
}

impl Usage {
    pub fn parse(text: &str) -> anyhow::Result<Usage> {
        Ok(toml::from_str(text)?)
    }

    /// `self` with `over`'s values on top.
    pub fn merged(&self, over: &Usage) -> Usage {
        let mut usage = self.usage.clone();
        usage.extend(over.usage.iter().map(|(k, v)| (k.clone(), *v)));
        Usage {
            region: over.region.clone().or_else(|| self.region.clone()),
            usage,
        }
    }
}

/// The value at `path` (`a.b.0.c`) of a resource's attributes.
pub fn attribute<'a>(attrs: &'a Value, path: &str) -> Option<&'a Value> {
    let mut value = attrs;
    for part in path.split('.') {
        value = match value {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!value.is_null()).then_some(value)
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        }),
        _ => None,
    }
}

/// Fills `${name}` and `${name:default}` from `attrs`; `Err(name)` names a missing one.
pub fn fill(template: &str, attrs: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &rest[start + 2..start + end];
        let (name, default) = match inner.split_once(':') {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match attribute(attrs, name).and_then(text_of) {
            Some(v) => out.push_str(&v),
            None => match default {
                Some(d) => out.push_str(d),
                None => return Err(name.to_string()),
            },
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(value: &MatchValue, attrs: &Value) -> Result<String, String> {
    match value {
        MatchValue::Template(t) => fill(t, attrs),
        MatchValue::Map { attr, map, default } => match attribute(attrs, attr).and_then(text_of) {
            Some(v) => map
                .get(&v)
                .cloned()
                .or_else(|| default.clone())
                .ok_or_else(|| format!("{attr} = {v}")),
            None => default.clone().ok_or_else(|| attr.clone()),
        },
    }
}

/// One priced part of a resource.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ComponentCost {
    pub name: String,
    pub service: String,
    pub unit: String,
    pub price: f64,
    /// Units a month.
    pub quantity: f64,
    pub monthly: f64,
    pub hourly: f64,
}

/// A part that could not be priced, and why.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Unpriced {
    pub name: String,
    pub reason: String,
}

/// How a resource came out.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// In the `free` list.
    Free,
    /// No rule for its type.
    NoRule,
    Priced {
        components: Vec<ComponentCost>,
        unpriced: Vec<Unpriced>,
        currency: Option<String>,
    },
}

/// Lookups already answered during one estimate, by service, region, unit and wanted
/// attributes: a state of thousands of instances of a few types looks each up once.
pub type Memo = HashMap<String, Option<Arc<Price>>>;

/// Prices one resource instance of `resource_type` with attributes `attrs` in `region`.
pub fn price(
    rules: &Rules,
    catalogue: &Catalogue,
    usage: &Usage,
    resource_type: &str,
    attrs: &Value,
    region: &str,
    memo: &mut Memo,
) -> Outcome {
    if rules.is_free(resource_type) {
        return Outcome::Free;
    }
    let Some(rule) = rules.rule(resource_type) else {
        return Outcome::NoRule;
    };
    let mut components = Vec::new();
    let mut unpriced = Vec::new();
    let mut currency = None;
    for component in &rule.components {
        let amount = match (&component.quantity, &component.usage) {
            (Quantity::Usage, Some(key)) => {
                let full = format!("{resource_type}.{key}");
                match usage.usage.get(&full) {
                    Some(v) => Ok(*v),
                    None => Err(format!("no usage amount for {full}")),
                }
            }
            _ => match &component.amount {
                None => Ok(1.0),
                Some(t) => fill(t, attrs)
                    .map_err(|name| format!("attribute {name} is not known"))
                    .and_then(|v| {
                        v.parse::<f64>()
                            .map_err(|_| format!("amount {v:?} is not a number"))
                    }),
            },
        };
        let amount = match amount {
            Ok(a) => a,
            Err(reason) => {
                unpriced.push(Unpriced {
                    name: component.name.clone(),
                    reason,
                });
                continue;
            }
        };
        let mut found = None;
        let mut why = String::from("no price in the catalogue");
        for lookup in &component.lookups {
            let mut want = Vec::with_capacity(lookup.matches.len());
            let mut missing = None;
            for (k, v) in &lookup.matches {
                match resolve(v, attrs) {
                    Ok(v) => want.push((k.clone(), v)),
                    Err(name) => {
                        missing = Some(name);
                        break;
                    }
                }
            }
            if let Some(name) = missing {
                why = format!("attribute {name} is not known");
                continue;
            }
            let mut key = String::with_capacity(96);
            for part in [
                lookup.service.as_str(),
                region,
                lookup.unit.as_deref().unwrap_or(""),
            ] {
                key.push_str(part);
                key.push('\u{1}');
            }
            for (k, v) in &want {
                key.push_str(k);
                key.push('\u{2}');
                key.push_str(v);
                key.push('\u{1}');
            }
            let hit = match memo.get(&key) {
                Some(hit) => hit.clone(),
                None => {
                    let found = catalogue
                        .find(&lookup.service, region, lookup.unit.as_deref(), &want)
                        .cloned()
                        .map(Arc::new);
                    memo.insert(key, found.clone());
                    found
                }
            };
            if let Some(p) = hit {
                found = Some((lookup, p));
                break;
            }
            why = format!(
                "no price for {} {} in {region}",
                lookup.service,
                want.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let Some((lookup, p)) = found else {
            unpriced.push(Unpriced {
                name: component.name.clone(),
                reason: why,
            });
            continue;
        };
        let quantity = match component.quantity {
            Quantity::Hourly => amount * HOURS_PER_MONTH,
            Quantity::Monthly | Quantity::Usage => amount,
        };
        let monthly = p.price * quantity;
        currency.get_or_insert_with(|| p.currency.clone());
        components.push(ComponentCost {
            name: component.name.clone(),
            service: lookup.service.clone(),
            unit: p.unit.clone(),
            price: p.price,
            quantity,
            monthly,
            hourly: monthly / HOURS_PER_MONTH,
        });
    }
    Outcome::Priced {
        components,
        unpriced,
        currency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn built_in_rules_and_usage_load() {
        let rules = Rules::load(None).unwrap();
        assert!(rules.rule("aws_instance").is_some());
        assert!(rules.is_free("aws_vpc"));
        Usage::parse(BUILT_IN_USAGE).unwrap();
    }

    #[test]
    fn templates_read_attributes_and_defaults() {
        let attrs = json!({"size": 100, "type": "gp3", "root": [{"v": true}]});
        assert_eq!(fill("${size}", &attrs).unwrap(), "100");
        assert_eq!(fill("x-${type}-${nope:z}", &attrs).unwrap(), "x-gp3-z");
        assert_eq!(fill("${root.0.v}", &attrs).unwrap(), "true");
        assert_eq!(fill("${nope}", &attrs).unwrap_err(), "nope");
    }

    #[test]
    fn a_database_is_priced_by_its_rule_and_a_missing_price_is_unpriced() {
        let rules = Rules::load(None).unwrap();
        let sample = Catalogue::sample();
        let usage = Usage::parse(BUILT_IN_USAGE).unwrap();
        let mut memo = Memo::new();
        let attrs = json!({"instance_class": "db.t3.micro", "engine": "postgres",
                           "multi_az": true, "allocated_storage": 20});
        let Outcome::Priced {
            components,
            unpriced,
            ..
        } = price(
            &rules,
            &sample,
            &usage,
            "aws_db_instance",
            &attrs,
            "us-east-1",
            &mut memo,
        )
        else {
            panic!("priced")
        };
        assert!(unpriced.is_empty(), "{unpriced:?}");
        let total: f64 = components.iter().map(|c| c.monthly).sum();
        assert!((total - (0.036 * 730.0 + 0.23 * 20.0)).abs() < 1e-9);
        let attrs = json!({"instance_class": "db.x9.huge", "engine": "postgres",
                           "allocated_storage": 20});
        let Outcome::Priced {
            components,
            unpriced,
            ..
        } = price(
            &rules,
            &sample,
            &usage,
            "aws_db_instance",
            &attrs,
            "us-east-1",
            &mut memo,
        )
        else {
            panic!("priced")
        };
        assert_eq!((components.len(), unpriced.len()), (1, 1));
        assert_eq!(
            price(
                &rules,
                &sample,
                &usage,
                "aws_unknown",
                &attrs,
                "us-east-1",
                &mut memo
            ),
            Outcome::NoRule
        );
    }
}
