//! What a module version declares, extracted once at publish time from the archive's HCL
//! (parsed with a real HCL parser): inputs, outputs, managed resources, module calls,
//! required providers and READMEs, shaped like the public registry's module details.
//!
//! Extraction is best effort: a file the parser cannot read contributes nothing, because
//! Terraform, not the registry, is the judge of what is valid configuration.

use hcl::{Body, Expression};
use serde::{Deserialize, Serialize};

use super::archive::{ModuleDir, ModuleFiles};
use super::hcl::{attribute, hcl_text, key_text, literal, text};

/// Metadata of one version: the root module and the submodules under `modules/`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModuleMetadata {
    pub root: ModuleInfo,
    pub submodules: Vec<ModuleInfo>,
}

/// One module directory.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModuleInfo {
    pub path: String,
    pub readme: String,
    pub empty: bool,
    pub inputs: Vec<Input>,
    pub outputs: Vec<Output>,
    pub dependencies: Vec<Dependency>,
    pub provider_dependencies: Vec<ProviderDependency>,
    pub resources: Vec<Resource>,
}

/// A `variable` block. `default` is the default's JSON text (HCL text when it is not a
/// literal), empty when there is none, as the public registry reports it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Input {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub default: String,
    pub required: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Output {
    pub name: String,
    pub description: String,
}

/// A `module` call.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Dependency {
    pub name: String,
    pub source: String,
    pub version: String,
}

/// An entry of `terraform { required_providers { … } }`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProviderDependency {
    pub name: String,
    pub namespace: String,
    pub source: String,
    pub version: String,
}

/// A managed `resource` block.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl ModuleMetadata {
    /// Extracts the metadata of every described directory of an inspected archive.
    pub fn extract(files: &ModuleFiles) -> Self {
        let mut metadata = ModuleMetadata::default();
        for (path, dir) in &files.dirs {
            let info = describe(path, dir);
            if path.is_empty() {
                metadata.root = info;
            } else {
                metadata.submodules.push(info);
            }
        }
        metadata
    }

    /// A one-line description: the first paragraph line of the root README that is not a
    /// heading, badge or HTML, cut at 300 characters.
    pub fn description(&self) -> String {
        let line = self
            .root
            .readme
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with(['#', '[', '!', '<', '=', '-', '`']))
            .unwrap_or("");
        line.chars().take(300).collect()
    }
}

fn describe(path: &str, dir: &ModuleDir) -> ModuleInfo {
    let mut info = ModuleInfo {
        path: path.to_string(),
        readme: dir.readme.clone().unwrap_or_default(),
        empty: !dir.has_config,
        ..ModuleInfo::default()
    };
    for (file, text) in &dir.tf_files {
        match hcl::parse(text) {
            Ok(body) => collect(&body, &mut info),
            Err(err) => {
                tracing::debug!(file = %format!("{path}/{file}"), error = %err, "HCL not parsed for metadata");
            }
        }
    }
    info
}

fn collect(body: &Body, info: &mut ModuleInfo) {
    for block in body.blocks() {
        let labels: Vec<&str> = block.labels().iter().map(|l| l.as_str()).collect();
        match (block.identifier(), labels.as_slice()) {
            ("variable", [name]) => {
                let default = attribute(block, "default");
                info.inputs.push(Input {
                    name: (*name).to_string(),
                    kind: attribute(block, "type").map(hcl_text).unwrap_or_default(),
                    description: attribute(block, "description")
                        .map(text)
                        .unwrap_or_default(),
                    default: default.map(default_text).unwrap_or_default(),
                    required: default.is_none(),
                });
            }
            ("output", [name]) => info.outputs.push(Output {
                name: (*name).to_string(),
                description: attribute(block, "description")
                    .map(text)
                    .unwrap_or_default(),
            }),
            ("resource", [kind, name]) => info.resources.push(Resource {
                name: (*name).to_string(),
                kind: (*kind).to_string(),
            }),
            ("module", [name]) => info.dependencies.push(Dependency {
                name: (*name).to_string(),
                source: attribute(block, "source").map(text).unwrap_or_default(),
                version: attribute(block, "version").map(text).unwrap_or_default(),
            }),
            ("terraform", []) => {
                for required in block
                    .body()
                    .blocks()
                    .filter(|b| b.identifier() == "required_providers")
                {
                    for attr in required.body().attributes() {
                        info.provider_dependencies
                            .push(provider_dependency(attr.key(), attr.expr()));
                    }
                }
            }
            _ => {}
        }
    }
}

fn provider_dependency(name: &str, expr: &Expression) -> ProviderDependency {
    let (source, version) = match expr {
        Expression::Object(object) => {
            let field = |key: &str| {
                object
                    .iter()
                    .find(|(k, _)| key_text(k).as_deref() == Some(key))
                    .map(|(_, v)| text(v))
                    .unwrap_or_default()
            };
            (field("source"), field("version"))
        }
        // The legacy form `aws = ">= 2.0"` names only a version.
        other => (String::new(), text(other)),
    };
    // Without a source, Terraform implies the provider in the `hashicorp` namespace.
    let source = if source.is_empty() {
        format!("hashicorp/{name}")
    } else {
        source
    };
    let parts: Vec<&str> = source.split('/').collect();
    let namespace = match parts.as_slice() {
        [namespace, _] | [_, namespace, _] => (*namespace).to_string(),
        _ => String::new(),
    };
    ProviderDependency {
        name: name.to_string(),
        namespace,
        source,
        version,
    }
}

/// A default value as JSON text when it is a literal, else as HCL text.
fn default_text(expr: &Expression) -> String {
    match literal(expr) {
        Some(value) => value.to_string(),
        None => hcl_text(expr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = r#"
terraform {
  required_version = ">= 1.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 4.0"
    }
    legacy = "~> 1.2"
  }
}

variable "name" {
  type        = string
  description = "Name prefix."
}

variable "cidrs" {
  type    = list(string)
  default = ["10.0.0.0/16"]
}

variable "tags" {
  type = map(string)
  default = {
    team = "net"
  }
  description = <<-EOT
    Tags for
    everything.
  EOT
}

variable "computed" {
  default = "${upper("x")}"
}

resource "aws_vpc" "this" {
  cidr_block = var.cidrs[0]
}

data "aws_region" "current" {}

module "subnets" {
  source  = "./modules/subnets"
}

module "remote" {
  source  = "terrace.example.com/acme/labels/null"
  version = "~> 1.0"
}

output "vpc_id" {
  value       = aws_vpc.this.id
  description = "The VPC."
}
"#;

    fn files(tf: &str, readme: Option<&str>) -> ModuleFiles {
        let mut files = ModuleFiles::default();
        files.dirs.insert(
            String::new(),
            ModuleDir {
                tf_files: vec![("main.tf".into(), tf.into())],
                tf_json_files: Vec::new(),
                has_config: true,
                readme: readme.map(str::to_string),
            },
        );
        files
    }

    #[test]
    fn inputs_outputs_resources_dependencies_and_providers_are_extracted() {
        let meta = ModuleMetadata::extract(&files(MAIN, None));
        let json = serde_json::to_value(&meta.root).unwrap();
        assert_eq!(
            json["inputs"],
            serde_json::json!([
                {"name": "name", "type": "string", "description": "Name prefix.", "default": "", "required": true},
                {"name": "cidrs", "type": "list(string)", "description": "", "default": "[\"10.0.0.0/16\"]", "required": false},
                {"name": "tags", "type": "map(string)", "description": "Tags for\neverything.", "default": "{\"team\":\"net\"}", "required": false},
                {"name": "computed", "type": "", "description": "", "default": "\"${upper(\"x\")}\"", "required": false},
            ])
        );
        assert_eq!(
            json["outputs"],
            serde_json::json!([{"name": "vpc_id", "description": "The VPC."}])
        );
        assert_eq!(
            json["resources"],
            serde_json::json!([{"name": "this", "type": "aws_vpc"}])
        );
        assert_eq!(
            json["dependencies"],
            serde_json::json!([
                {"name": "subnets", "source": "./modules/subnets", "version": ""},
                {"name": "remote", "source": "terrace.example.com/acme/labels/null", "version": "~> 1.0"},
            ])
        );
        assert_eq!(
            json["provider_dependencies"],
            serde_json::json!([
                {"name": "aws", "namespace": "hashicorp", "source": "hashicorp/aws", "version": ">= 4.0"},
                {"name": "legacy", "namespace": "hashicorp", "source": "hashicorp/legacy", "version": "~> 1.2"},
            ])
        );
    }

    #[test]
    fn unparsable_files_contribute_nothing_and_descriptions_come_from_the_readme() {
        let readme = "# VPC\n\n[![badge](x)](y)\n\nCreates a VPC with subnets.\n\nMore.";
        let meta = ModuleMetadata::extract(&files("variable {{{", Some(readme)));
        assert!(meta.root.inputs.is_empty());
        assert!(!meta.root.empty);
        assert_eq!(meta.description(), "Creates a VPC with subnets.");
    }
}
