//! A blueprint card's estimate: the resources of its module's root configuration priced with
//! their literal attributes and the defaults of the variables they use (a plan of the
//! defaults, without Terraform). Attributes that depend on anything else are unknown, so the
//! components that need them are listed as unpriced.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::Ctx;
use super::estimate::{self, Estimate, Instance, Pricing};
use super::service;
use crate::error::Result;
use crate::identity::auth::{Action, Principal};
use crate::names::OrgName;
use crate::registry::modules::hcl as hcl_text;
use crate::registry::modules::{ModuleAddress, ModuleVersion};

/// `GET /api/v1/orgs/{org}/blueprints/{name}/cost`.
#[derive(Debug, serde::Serialize)]
pub struct BlueprintCost {
    pub blueprint: String,
    pub version: String,
    /// What was priced: the module's resources with the inputs' defaults.
    pub basis: &'static str,
    #[serde(flatten)]
    pub estimate: Estimate,
}

/// The value of `expr` given variable defaults: a literal, or `var.NAME` with a default.
fn value_of(expr: &hcl::Expression, defaults: &Map<String, Value>) -> Option<Value> {
    if let Some(v) = hcl_text::literal(expr) {
        return Some(v);
    }
    let text = hcl_text::hcl_text(expr);
    let name = text.strip_prefix("var.")?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return None;
    }
    defaults.get(name).cloned().filter(|v| !v.is_null())
}

/// The resources of `files` (HCL texts) with what is known of their attributes, and the
/// providers' regions.
pub fn instances(
    files: &[(String, String)],
    defaults: &Map<String, Value>,
) -> (Vec<Instance>, HashMap<String, String>) {
    let mut out = Vec::new();
    let mut regions = HashMap::new();
    let bodies: Vec<hcl::Body> = files
        .iter()
        .filter_map(|(_, text)| hcl::parse(text).ok())
        .collect();
    // Variable defaults declared in the files complete the schema's.
    let mut defaults = defaults.clone();
    for body in &bodies {
        for block in body.blocks().filter(|b| b.identifier() == "variable") {
            if let (Some(name), Some(default)) = (
                block.labels().first().map(|l| l.as_str().to_string()),
                hcl_text::attribute(block, "default").and_then(hcl_text::literal),
            ) {
                defaults.entry(name).or_insert(default);
            }
        }
    }
    for body in &bodies {
        for block in body.blocks() {
            let labels: Vec<&str> = block.labels().iter().map(|l| l.as_str()).collect();
            match (block.identifier(), labels.as_slice()) {
                ("provider", [name]) => {
                    if let Some(Value::String(region)) =
                        hcl_text::attribute(block, "region").and_then(|e| value_of(e, &defaults))
                    {
                        regions.insert((*name).to_string(), region);
                    }
                }
                ("resource", [ty, name]) => {
                    let mut attrs = Map::new();
                    for attr in block.body().attributes() {
                        if let Some(v) = value_of(attr.expr(), &defaults) {
                            attrs.insert(attr.key().to_string(), v);
                        }
                    }
                    let count = hcl_text::attribute(block, "count")
                        .and_then(|e| value_of(e, &defaults))
                        .and_then(|v| v.as_u64())
                        .unwrap_or(1)
                        .min(1000);
                    let provider = ty.split('_').next().unwrap_or(ty).to_string();
                    for i in 0..count {
                        let address = if hcl_text::attribute(block, "count").is_some() {
                            format!("{ty}.{name}[{i}]")
                        } else {
                            format!("{ty}.{name}")
                        };
                        out.push(Instance {
                            address,
                            resource_type: (*ty).to_string(),
                            provider: provider.clone(),
                            attrs: Value::Object(attrs.clone()),
                        });
                    }
                }
                _ => {}
            }
        }
    }
    (out, regions)
}

/// The estimate of a blueprint's module with its inputs' defaults.
pub async fn blueprint_cost(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &str,
) -> Result<BlueprintCost> {
    let org_id = service::org_id(app, principal, org, Action::OrgRead).await?;
    let resolved =
        crate::blueprints::resolve(&app.deployments.blueprints, principal, org, name, None).await?;
    let addr = ModuleAddress::lookup(&resolved.namespace, &resolved.module_name, &resolved.system)?;
    let version = ModuleVersion::parse(&resolved.version)?;
    let config = crate::registry::modules::module_config(
        &app.deployments.blueprints.registry,
        principal,
        &addr,
        &version,
    )
    .await?;
    let defaults: Map<String, Value> = resolved.schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.get("default")?.clone())))
        .collect();
    let (instances, regions) = instances(&config.tf_files, &defaults);
    let catalogue = service::catalogue_for(app, org_id).await?;
    let usage = service::usage_for(app, None).await?;
    let pricing = Pricing {
        rules: &app.rules,
        catalogue: &catalogue,
        usage: &usage,
        provider_regions: regions,
    };
    Ok(BlueprintCost {
        blueprint: resolved.name,
        version: resolved.version,
        basis: "the module's resources with the inputs' defaults",
        estimate: estimate::estimate(&pricing, &instances),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_variable_defaults_are_known() {
        let text = r#"
variable "size" {
  default = 50
}
variable "kind" {
  type = string
}
provider "aws" {
  region = "eu-west-1"
}
resource "aws_ebs_volume" "data" {
  size = var.size
  type = var.kind
  availability_zone = "eu-west-1a"
  count = 2
}
"#;
        let defaults = Map::from_iter([("kind".to_string(), Value::from("gp3"))]);
        let (instances, regions) = instances(&[("main.tf".into(), text.into())], &defaults);
        assert_eq!(instances.len(), 2);
        assert_eq!(instances[1].address, "aws_ebs_volume.data[1]");
        assert_eq!(instances[0].attrs["size"], 50);
        assert_eq!(instances[0].attrs["type"], "gp3");
        assert_eq!(regions["aws"], "eu-west-1");
    }
}
