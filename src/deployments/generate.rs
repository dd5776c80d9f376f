//! The root module of a deployment: the blueprint's module from Terrace's own registry, the
//! `http` backend at Terrace's own state API, the inputs as variables and the module's
//! outputs passed through. Written as `main.tf.json`; inputs go to `terraform.tfvars.json`.

use serde_json::{Map, Value, json};

/// What the generated configuration is made of.
pub struct Root<'a> {
    /// Terrace's base URL (`https://host[:port]`).
    pub url: &'a str,
    pub org: &'a str,
    pub workspace: &'a str,
    /// `<org>/<name>/<system>` in Terrace's registry.
    pub module: &'a str,
    pub version: &'a str,
    /// Every input name, and whether it is sensitive.
    pub inputs: Vec<(String, bool)>,
    /// The module's outputs, and whether each is sensitive.
    pub outputs: &'a [(String, bool)],
}

/// The registry host of `url`: its authority without the scheme.
pub fn host(url: &str) -> &str {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/')
}

/// `main.tf.json`.
pub fn main_tf(root: &Root<'_>) -> Value {
    let state = format!("{}/state/{}/{}", root.url, root.org, root.workspace);
    let mut module = Map::new();
    module.insert(
        "source".into(),
        Value::String(format!("{}/{}", host(root.url), root.module)),
    );
    module.insert("version".into(), Value::String(root.version.to_string()));
    let mut variables = Map::new();
    for (name, sensitive) in &root.inputs {
        module.insert(name.clone(), Value::String(format!("${{var.{name}}}")));
        let mut variable = Map::new();
        if *sensitive {
            variable.insert("sensitive".into(), Value::Bool(true));
        }
        variables.insert(name.clone(), Value::Object(variable));
    }
    let mut outputs = Map::new();
    for (name, sensitive) in root.outputs {
        outputs.insert(
            name.clone(),
            json!({"value": format!("${{module.main.{name}}}"), "sensitive": sensitive}),
        );
    }
    let mut doc = json!({
        "terraform": {"backend": {"http": {
            "address": state,
            "lock_address": state,
            "unlock_address": state,
            "username": "terrace",
        }}},
        "module": {"main": Value::Object(module)},
    });
    if !variables.is_empty() {
        doc["variable"] = Value::Object(variables);
    }
    if !outputs.is_empty() {
        doc["output"] = Value::Object(outputs);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_module_calls_the_registry_and_keeps_state_in_terrace() {
        let outputs = vec![("id".to_string(), false), ("secret".to_string(), true)];
        let doc = main_tf(&Root {
            url: "https://terrace.example.com:8443",
            org: "acme",
            workspace: "web",
            module: "acme/vpc/aws",
            version: "1.2.0",
            inputs: vec![("cidr".into(), false), ("password".into(), true)],
            outputs: &outputs,
        });
        assert_eq!(
            doc["module"]["main"]["source"],
            "terrace.example.com:8443/acme/vpc/aws"
        );
        assert_eq!(doc["module"]["main"]["version"], "1.2.0");
        assert_eq!(doc["module"]["main"]["cidr"], "${var.cidr}");
        assert_eq!(doc["variable"]["password"]["sensitive"], true);
        assert_eq!(
            doc["terraform"]["backend"]["http"]["lock_address"],
            "https://terrace.example.com:8443/state/acme/web"
        );
        assert_eq!(doc["output"]["secret"]["sensitive"], true);
        assert_eq!(doc["output"]["id"]["value"], "${module.main.id}");
    }
}
