//! Input schemas: JSON Schema (2020-12) derived from a module's `variable` blocks, the
//! overrides a blueprint puts on top, and the check of deployment inputs against the result.
//! Pure functions over configuration text; no I/O.
//!
//! Derivation reads what is statically clear and nothing more: Terraform types become schema
//! types, and the common `validation` forms (`contains([...], var.x)`, `can(regex("…",
//! var.x))`, `length(var.x) <op> N`, `var.x <op> N`, joined with `&&`, optionally guarded by
//! `var.x == null ||`) become keywords. Every condition is kept with its `error_message` in
//! `x-terrace-validations`, derived or not, and a derived keyword's message is in
//! `x-terrace-messages` so that a refusal reads as the module author wrote it.
//!
//! Inputs are checked by this module rather than a general JSON Schema crate: the schemas are
//! always ones derived here (a small, known subset of keywords), each refusal must read as
//! `inputs.<field>: <message>` in the module author's words, and `pattern` comes from
//! Terraform's `regex()`, which uses RE2 syntax — the `regex` crate's syntax — whereas JSON
//! Schema validators implement ECMA-262 patterns.

use std::collections::BTreeMap;
use std::str::FromStr;

use hcl::expr::{BinaryOperator, FuncCall, Operation, TraversalOperator};
use hcl::{Block, Body, Expression, ObjectKey};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};

use crate::registry::modules::hcl::{attribute, hcl_text, key_text, literal, text};

/// The JSON Schema dialect of every derived schema.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// Longest README summary kept (characters).
const MAX_SUMMARY: usize = 1000;

/// Largest compiled `pattern` accepted when checking inputs: module text is untrusted.
const MAX_REGEX_SIZE: usize = 1 << 20;

/// What a blueprint shows of one module version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Derived {
    /// The input schema before the blueprint's overrides.
    pub schema: Value,
    pub outputs: Vec<OutputInfo>,
    pub readme: String,
    /// The README's first paragraph.
    pub summary: String,
}

/// An `output` block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputInfo {
    pub name: String,
    pub description: String,
    pub sensitive: bool,
}

/// A blueprint's curation of one input.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputOverride {
    /// The values offered (becomes `enum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    /// A default of the blueprint's own; `null` is a default too, hence the wrapper.
    #[serde(
        default,
        deserialize_with = "some_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<Value>,
    /// A label for forms (becomes `title`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Not shown in forms, and fixed to its default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    /// Position in forms (becomes `x-terrace-order`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i64>,
}

fn some_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// One module's configuration files.
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    pub tf_files: &'a [(String, String)],
    pub tf_json_files: &'a [(String, String)],
    pub readme: &'a str,
}

/// A `variable` block, whichever syntax it came in.
#[derive(Debug, Default)]
struct Variable {
    name: String,
    kind: Option<Expression>,
    /// Present when the variable has a default; `None` inside when it is not a literal.
    default: Option<Option<Value>>,
    description: Option<String>,
    sensitive: bool,
    nullable: Option<bool>,
    validations: Vec<Validation>,
}

#[derive(Debug)]
struct Validation {
    /// `None` when the condition could not be parsed.
    condition: Option<Expression>,
    text: String,
    error_message: String,
}

/// Derives the schema, outputs and README summary of a module. Files the parser cannot read
/// contribute nothing: Terraform, not the catalogue, judges configuration.
pub fn derive(sources: Sources<'_>) -> Derived {
    let mut variables = Vec::new();
    let mut outputs = Vec::new();
    for (file, text) in sources.tf_files {
        match hcl::parse(text) {
            Ok(body) => collect_hcl(&body, &mut variables, &mut outputs),
            Err(err) => tracing::debug!(%file, error = %err, "HCL not parsed for the input schema"),
        }
    }
    for (file, text) in sources.tf_json_files {
        match serde_json::from_str::<Value>(text) {
            Ok(doc) => collect_json(&doc, &mut variables, &mut outputs),
            Err(err) => {
                tracing::debug!(%file, error = %err, "JSON not parsed for the input schema")
            }
        }
    }
    Derived {
        schema: input_schema(&variables),
        outputs,
        readme: sources.readme.to_string(),
        summary: summary(sources.readme),
    }
}

/// The README's first paragraph: the first run of lines that are not headings, badges, HTML
/// or rules, joined, cut at [`MAX_SUMMARY`] characters.
pub fn summary(readme: &str) -> String {
    let mut lines = readme.lines().map(str::trim).skip_while(|l| {
        l.is_empty() || l.starts_with(['#', '[', '!', '<', '=', '-', '`', '|', '>'])
    });
    let mut paragraph = Vec::new();
    for line in lines.by_ref() {
        if line.is_empty() || line.starts_with('#') {
            break;
        }
        paragraph.push(line);
    }
    paragraph.join(" ").chars().take(MAX_SUMMARY).collect()
}

// ---------------------------------------------------------------------------------------------
// Reading variables and outputs.

fn collect_hcl(body: &Body, variables: &mut Vec<Variable>, outputs: &mut Vec<OutputInfo>) {
    for block in body.blocks() {
        let labels: Vec<&str> = block.labels().iter().map(|l| l.as_str()).collect();
        match (block.identifier(), labels.as_slice()) {
            ("variable", [name]) => variables.push(hcl_variable(name, block)),
            ("output", [name]) => outputs.push(OutputInfo {
                name: (*name).to_string(),
                description: attribute(block, "description")
                    .map(text)
                    .unwrap_or_default(),
                sensitive: matches!(attribute(block, "sensitive"), Some(Expression::Bool(true))),
            }),
            _ => {}
        }
    }
}

fn hcl_variable(name: &str, block: &Block) -> Variable {
    let flag = |key| match attribute(block, key) {
        Some(Expression::Bool(b)) => Some(*b),
        _ => None,
    };
    Variable {
        name: name.to_string(),
        kind: attribute(block, "type").cloned(),
        default: attribute(block, "default").map(literal),
        description: attribute(block, "description").map(text),
        sensitive: flag("sensitive").unwrap_or(false),
        nullable: flag("nullable"),
        validations: block
            .body()
            .blocks()
            .filter(|b| b.identifier() == "validation")
            .map(|b| {
                let condition = attribute(b, "condition").cloned();
                Validation {
                    text: condition.as_ref().map(hcl_text).unwrap_or_default(),
                    condition,
                    error_message: attribute(b, "error_message").map(text).unwrap_or_default(),
                }
            })
            .collect(),
    }
}

/// Terraform's JSON syntax: `{"variable": {"name": {...}}}`, where any block level may also
/// be an array of such objects.
fn collect_json(doc: &Value, variables: &mut Vec<Variable>, outputs: &mut Vec<OutputInfo>) {
    for (name, spec) in labelled(doc.get("variable")) {
        variables.push(json_variable(name, spec));
    }
    for (name, spec) in labelled(doc.get("output")) {
        outputs.push(OutputInfo {
            name: name.to_string(),
            description: spec["description"].as_str().unwrap_or_default().to_string(),
            sensitive: spec["sensitive"].as_bool().unwrap_or(false),
        });
    }
}

/// `(label, body)` of the blocks under a JSON block key.
fn labelled(value: Option<&Value>) -> Vec<(&str, &Value)> {
    let mut found = Vec::new();
    let objects: Vec<&Value> = match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
        None => Vec::new(),
    };
    for object in objects {
        if let Value::Object(map) = object {
            for (label, body) in map {
                match body {
                    Value::Array(bodies) => {
                        found.extend(bodies.iter().map(|b| (label.as_str(), b)))
                    }
                    other => found.push((label.as_str(), other)),
                }
            }
        }
    }
    found
}

fn json_variable(name: &str, spec: &Value) -> Variable {
    let validations = match spec.get("validation") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    Variable {
        name: name.to_string(),
        kind: spec["type"]
            .as_str()
            .and_then(|t| Expression::from_str(t).ok()),
        default: spec.get("default").map(|d| Some(d.clone())),
        description: spec["description"].as_str().map(str::to_string),
        sensitive: spec["sensitive"].as_bool().unwrap_or(false),
        nullable: spec["nullable"].as_bool(),
        validations: validations
            .into_iter()
            .map(|v| {
                let source = v["condition"].as_str().unwrap_or_default();
                // Expression attributes in JSON are templates: "${ … }" holds the expression.
                let inner = source
                    .trim()
                    .strip_prefix("${")
                    .and_then(|s| s.strip_suffix('}'))
                    .unwrap_or(source)
                    .trim();
                Validation {
                    condition: Expression::from_str(inner).ok(),
                    text: inner.to_string(),
                    error_message: v["error_message"].as_str().unwrap_or_default().to_string(),
                }
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Types and validations to schema keywords.

fn input_schema(variables: &[Variable]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for variable in variables {
        // A later declaration of the same name is a Terraform error; the first one is shown.
        if properties.contains_key(&variable.name) {
            continue;
        }
        if variable.default.is_none() {
            required.push(Value::String(variable.name.clone()));
        }
        properties.insert(variable.name.clone(), variable_schema(variable));
    }
    json!({
        "$schema": DIALECT,
        "type": "object",
        "properties": properties,
        "required": required,
        // Terraform refuses arguments a module does not declare.
        "additionalProperties": false,
    })
}

fn variable_schema(variable: &Variable) -> Value {
    let mut schema = type_schema(variable.kind.as_ref());
    if let Some(description) = variable.description.as_deref().filter(|d| !d.is_empty()) {
        schema.insert("description".into(), description.into());
    }
    if let Some(Some(default)) = &variable.default {
        schema.insert("default".into(), default.clone());
    }
    if variable.sensitive {
        schema.insert("writeOnly".into(), true.into());
    }
    let mut validations = Vec::new();
    let mut null_guarded = true;
    for validation in &variable.validations {
        validations.push(json!({
            "condition": validation.text,
            "error_message": validation.error_message,
        }));
        let Some(condition) = &validation.condition else {
            continue;
        };
        let found = keywords(condition, &variable.name, &schema);
        if found.keywords.is_empty() {
            continue;
        }
        // Terraform evaluates conditions on null too, and these forms fail on it.
        null_guarded &= found.null_ok;
        add_keywords(&mut schema, found, &validation.error_message);
    }
    if !validations.is_empty() {
        schema.insert("x-terrace-validations".into(), Value::Array(validations));
    }
    // A nullable variable (Terraform's default) takes null, unless a validation refuses it;
    // `nullable = false` never does.
    let default_null = matches!(variable.default, Some(Some(Value::Null)));
    if (variable.nullable != Some(false) && null_guarded) || default_null {
        allow_null(&mut schema);
    }
    Value::Object(schema)
}

fn allow_null(schema: &mut Map<String, Value>) {
    match schema.get_mut("type") {
        Some(Value::String(kind)) => {
            let kind = std::mem::take(kind);
            schema.insert("type".into(), json!([kind, "null"]));
        }
        Some(Value::Array(kinds)) if !kinds.contains(&json!("null")) => kinds.push("null".into()),
        _ => {}
    }
    if let Some(Value::Array(values)) = schema.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

/// The schema of a Terraform type expression; `{}` (anything) for `any` or an unknown type.
fn type_schema(kind: Option<&Expression>) -> Map<String, Value> {
    let mut schema = Map::new();
    let Some(kind) = kind else {
        return schema;
    };
    match kind {
        Expression::Variable(name) => {
            let kind = match name.as_str() {
                "string" => "string",
                "number" => "number",
                "bool" => "boolean",
                _ => return schema,
            };
            schema.insert("type".into(), kind.into());
        }
        Expression::Parenthesis(inner) => return type_schema(Some(inner)),
        Expression::FuncCall(call) if call.name.namespace.is_empty() => {
            let arg = call.args.first();
            match call.name.name.as_str() {
                "list" | "set" => {
                    schema.insert("type".into(), "array".into());
                    schema.insert("items".into(), Value::Object(type_schema(arg)));
                    if call.name.name.as_str() == "set" {
                        schema.insert("uniqueItems".into(), true.into());
                    }
                }
                "map" => {
                    schema.insert("type".into(), "object".into());
                    schema.insert(
                        "additionalProperties".into(),
                        Value::Object(type_schema(arg)),
                    );
                }
                "object" => {
                    schema.insert("type".into(), "object".into());
                    if let Some(Expression::Object(attributes)) = arg {
                        object_schema(attributes, &mut schema);
                    }
                }
                "tuple" => {
                    schema.insert("type".into(), "array".into());
                    if let Some(Expression::Array(elements)) = arg {
                        let items: Vec<Value> = elements
                            .iter()
                            .map(|e| Value::Object(type_schema(Some(e))))
                            .collect();
                        schema.insert("minItems".into(), items.len().into());
                        schema.insert("prefixItems".into(), Value::Array(items));
                        schema.insert("items".into(), false.into());
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    schema
}

fn object_schema(attributes: &hcl::Object<ObjectKey, Expression>, schema: &mut Map<String, Value>) {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (key, kind) in attributes {
        let Some(name) = key_text(key) else { continue };
        let property = match kind {
            Expression::FuncCall(call)
                if call.name.namespace.is_empty() && call.name.name.as_str() == "optional" =>
            {
                let mut property = type_schema(call.args.first());
                if let Some(default) = call.args.get(1).and_then(literal) {
                    property.insert("default".into(), default);
                }
                property
            }
            other => {
                required.push(Value::String(name.clone()));
                type_schema(Some(other))
            }
        };
        properties.insert(name, Value::Object(property));
    }
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required));
    }
}

/// Keywords one condition implies.
#[derive(Debug, Default)]
struct Found {
    keywords: Vec<(&'static str, Value)>,
    /// The condition lets null through (`var.x == null || …`).
    null_ok: bool,
}

fn keywords(condition: &Expression, var: &str, schema: &Map<String, Value>) -> Found {
    let condition = unwrap(condition);
    if let Expression::Operation(op) = condition
        && let Operation::Binary(binary) = op.as_ref()
        && binary.operator == BinaryOperator::Or
    {
        let (lhs, rhs) = (unwrap(&binary.lhs_expr), unwrap(&binary.rhs_expr));
        let rest = if is_null_test(lhs, var) {
            rhs
        } else if is_null_test(rhs, var) {
            lhs
        } else {
            return Found::default();
        };
        let mut found = Found::default();
        conjuncts(rest, var, schema, &mut found.keywords);
        found.null_ok = true;
        return found;
    }
    let mut found = Found::default();
    conjuncts(condition, var, schema, &mut found.keywords);
    found
}

fn unwrap(expr: &Expression) -> &Expression {
    match expr {
        Expression::Parenthesis(inner) => unwrap(inner),
        other => other,
    }
}

/// `var.x == null` (either way round).
fn is_null_test(expr: &Expression, var: &str) -> bool {
    let Expression::Operation(op) = expr else {
        return false;
    };
    let Operation::Binary(binary) = op.as_ref() else {
        return false;
    };
    let (lhs, rhs) = (unwrap(&binary.lhs_expr), unwrap(&binary.rhs_expr));
    binary.operator == BinaryOperator::Eq
        && ((is_var(lhs, var) && matches!(rhs, Expression::Null))
            || (is_var(rhs, var) && matches!(lhs, Expression::Null)))
}

/// Every `&&`-joined part that has a known form contributes its keywords.
fn conjuncts(
    expr: &Expression,
    var: &str,
    schema: &Map<String, Value>,
    out: &mut Vec<(&'static str, Value)>,
) {
    let expr = unwrap(expr);
    match expr {
        Expression::Operation(op) => match op.as_ref() {
            Operation::Binary(binary) if binary.operator == BinaryOperator::And => {
                conjuncts(&binary.lhs_expr, var, schema, out);
                conjuncts(&binary.rhs_expr, var, schema, out);
            }
            Operation::Binary(binary) => {
                comparison(
                    unwrap(&binary.lhs_expr),
                    binary.operator,
                    unwrap(&binary.rhs_expr),
                    var,
                    schema,
                    out,
                );
            }
            Operation::Unary(_) => {}
        },
        Expression::FuncCall(call) => match function(call) {
            // contains([...], var.x)
            Some(("contains", [Expression::Array(items), value])) if is_var(unwrap(value), var) => {
                if let Some(values) = items.iter().map(literal).collect::<Option<Vec<_>>>() {
                    out.push(("enum", Value::Array(values)));
                }
            }
            // can(regex("…", var.x))
            Some(("can", [inner])) => {
                if let Expression::FuncCall(inner) = unwrap(inner)
                    && let Some(("regex", [Expression::String(pattern), value])) = function(inner)
                    && is_var(unwrap(value), var)
                {
                    out.push(("pattern", Value::String(pattern.clone())));
                }
            }
            _ => {}
        },
        _ => {}
    }
}

fn function(call: &FuncCall) -> Option<(&str, &[Expression])> {
    call.name
        .namespace
        .is_empty()
        .then(|| (call.name.name.as_str(), call.args.as_slice()))
}

/// `length(var.x) <op> N` and `var.x <op> N`, either way round.
fn comparison(
    lhs: &Expression,
    operator: BinaryOperator,
    rhs: &Expression,
    var: &str,
    schema: &Map<String, Value>,
    out: &mut Vec<(&'static str, Value)>,
) {
    use BinaryOperator::*;
    let (subject, operator, bound) = match (number(lhs), number(rhs)) {
        (None, Some(bound)) => (lhs, operator, bound),
        (Some(bound), None) => {
            let flipped = match operator {
                Less => Greater,
                LessEq => GreaterEq,
                Greater => Less,
                GreaterEq => LessEq,
                other => other,
            };
            (rhs, flipped, bound)
        }
        _ => return,
    };
    if is_var(subject, var) {
        let keyword = match operator {
            GreaterEq => "minimum",
            Greater => "exclusiveMinimum",
            LessEq => "maximum",
            Less => "exclusiveMaximum",
            Eq => {
                out.push(("enum", json!([bound])));
                return;
            }
            _ => return,
        };
        out.push((keyword, bound));
        return;
    }
    let Expression::FuncCall(call) = subject else {
        return;
    };
    let Some(("length", [value])) = function(call) else {
        return;
    };
    if !is_var(unwrap(value), var) {
        return;
    }
    let Some(n) = bound.as_i64().filter(|n| *n >= 0) else {
        return;
    };
    let (min, max) = match schema.get("type").and_then(Value::as_str) {
        Some("string") => ("minLength", "maxLength"),
        Some("array") => ("minItems", "maxItems"),
        Some("object") => ("minProperties", "maxProperties"),
        _ => return,
    };
    match operator {
        GreaterEq => out.push((min, n.into())),
        Greater => out.push((min, (n + 1).into())),
        LessEq => out.push((max, n.into())),
        Less if n > 0 => out.push((max, (n - 1).into())),
        Eq => {
            out.push((min, n.into()));
            out.push((max, n.into()));
        }
        _ => {}
    }
}

fn number(expr: &Expression) -> Option<Value> {
    match literal(expr)? {
        Value::Number(n) => Some(Value::Number(n)),
        _ => None,
    }
}

/// `var.<name>` exactly.
fn is_var(expr: &Expression, var: &str) -> bool {
    let Expression::Traversal(traversal) = expr else {
        return false;
    };
    matches!(&traversal.expr, Expression::Variable(v) if v.as_str() == "var")
        && matches!(traversal.operators.as_slice(), [TraversalOperator::GetAttr(name)] if name.as_str() == var)
}

/// Adds derived keywords with their message; a keyword already present (from an earlier
/// validation) goes into `allOf`, so that both are checked with their own messages.
fn add_keywords(schema: &mut Map<String, Value>, found: Found, message: &str) {
    for (keyword, value) in found.keywords {
        let mut target = Map::new();
        let fresh = !schema.contains_key(keyword);
        target.insert(keyword.into(), value);
        if !message.is_empty() {
            target.insert("x-terrace-messages".into(), json!({ keyword: message }));
        }
        if fresh {
            for (key, value) in target {
                if key == "x-terrace-messages" {
                    merge_messages(schema, value);
                } else {
                    schema.insert(key, value);
                }
            }
        } else {
            let all = schema
                .entry("allOf")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(all) = all {
                all.push(Value::Object(target));
            }
        }
    }
}

fn merge_messages(schema: &mut Map<String, Value>, messages: Value) {
    let entry = schema
        .entry("x-terrace-messages")
        .or_insert_with(|| Value::Object(Map::new()));
    if let (Value::Object(existing), Value::Object(new)) = (entry, messages) {
        existing.extend(new);
    }
}

// ---------------------------------------------------------------------------------------------
// Overrides.

/// Applies a blueprint's overrides to a derived schema. Returns the schema with every override
/// that fits applied, and one message per override that does not (unknown input, an allowed
/// value or default the input refuses, a hidden input without a default).
pub fn apply_overrides(
    schema: &Value,
    overrides: &BTreeMap<String, InputOverride>,
) -> (Value, Vec<String>) {
    let mut schema = schema.clone();
    let mut problems = Vec::new();
    for (name, input) in overrides {
        let path = format!("inputs.{name}");
        let Some(property) = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut(name))
            .and_then(Value::as_object_mut)
        else {
            problems.push(format!("{path}: the module has no such variable"));
            continue;
        };
        if let Some(allowed) = &input.allowed {
            let before = Value::Object(property.clone());
            let mut fits = true;
            for (i, value) in allowed.iter().enumerate() {
                let mut errors = Vec::new();
                check(&before, value, &format!("{path}.allowed[{i}]"), &mut errors);
                fits &= errors.is_empty();
                problems.extend(errors);
            }
            if allowed.is_empty() {
                problems.push(format!("{path}.allowed: must not be empty"));
            } else if fits {
                property.insert("enum".into(), Value::Array(allowed.clone()));
                // The curated list replaces what the module's validations derive.
                if let Some(Value::Object(messages)) = property.get_mut("x-terrace-messages") {
                    messages.remove("enum");
                }
            }
        }
        if let Some(default) = &input.default {
            let mut errors = Vec::new();
            check(
                &Value::Object(property.clone()),
                default,
                &format!("{path}.default"),
                &mut errors,
            );
            if errors.is_empty() {
                property.insert("default".into(), default.clone());
            }
            problems.extend(errors);
        }
        if let Some(label) = &input.label {
            property.insert("title".into(), label.clone().into());
        }
        if let Some(order) = input.order {
            property.insert("x-terrace-order".into(), order.into());
        }
        if input.hidden {
            property.insert("x-terrace-hidden".into(), true.into());
        }
        let has_default = property.contains_key("default");
        if has_default && let Some(Value::Array(required)) = schema.get_mut("required") {
            required.retain(|r| r.as_str() != Some(name));
        }
        if input.hidden && !has_default {
            problems.push(format!(
                "{path}: a hidden input needs a default (the module declares none)"
            ));
        }
    }
    (schema, problems)
}

/// The names of inputs marked `writeOnly` (Terraform's `sensitive`).
pub fn sensitive_inputs(schema: &Value) -> Vec<String> {
    schema["properties"]
        .as_object()
        .map(|properties| {
            properties
                .iter()
                .filter(|(_, p)| p["writeOnly"] == Value::Bool(true))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Checking inputs.

/// Checks deployment inputs against a blueprint schema and returns them with defaults filled
/// in; otherwise one message per offending field, `inputs.<field>: …`.
pub fn validate_inputs(schema: &Value, inputs: &Value) -> Result<Value, Vec<String>> {
    let mut inputs = match inputs {
        Value::Null => Value::Object(Map::new()),
        Value::Object(_) => inputs.clone(),
        _ => return Err(vec!["inputs: must be an object".into()]),
    };
    let mut errors = Vec::new();
    if let (Some(properties), Value::Object(given)) = (schema["properties"].as_object(), &inputs) {
        for (name, property) in properties {
            if property["x-terrace-hidden"] == Value::Bool(true)
                && let Some(value) = given.get(name)
                && !property.get("default").is_some_and(|d| json_eq(d, value))
            {
                errors.push(format!("inputs.{name}: is fixed by this blueprint"));
            }
        }
    }
    apply_defaults(schema, &mut inputs, true);
    check(schema, &inputs, "inputs", &mut errors);
    if errors.is_empty() {
        Ok(inputs)
    } else {
        Err(errors)
    }
}

/// Fills absent object attributes from `default`, as Terraform does for variables and
/// `optional(T, default)` attributes (also replacing null attributes below the top level).
fn apply_defaults(schema: &Value, value: &mut Value, top: bool) {
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    let absent = match map.get(name) {
                        None => true,
                        Some(Value::Null) => !top,
                        Some(_) => false,
                    };
                    if absent && let Some(default) = property.get("default") {
                        map.insert(name.clone(), default.clone());
                    }
                    if let Some(inner) = map.get_mut(name) {
                        apply_defaults(property, inner, false);
                    }
                }
            }
            if let Some(extra) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                let declared = schema["properties"].as_object();
                for (name, inner) in map.iter_mut() {
                    if declared.is_none_or(|d| !d.contains_key(name)) {
                        apply_defaults(extra, inner, false);
                    }
                }
            }
        }
        Value::Array(items) => {
            let prefix = schema["prefixItems"].as_array();
            for (i, item) in items.iter_mut().enumerate() {
                match prefix.and_then(|p| p.get(i)) {
                    Some(inner) => apply_defaults(inner, item, false),
                    None => {
                        if let Some(inner) = schema.get("items").filter(|s| s.is_object()) {
                            apply_defaults(inner, item, false);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Checks `value` against the subset of JSON Schema that derivation produces.
fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let schema = match schema {
        Value::Object(schema) => schema,
        Value::Bool(false) => {
            errors.push(format!("{path}: is not allowed"));
            return;
        }
        _ => return,
    };
    let fail = |errors: &mut Vec<String>, keyword: &str, fallback: String| {
        let message = schema
            .get("x-terrace-messages")
            .and_then(|m| m.get(keyword))
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .unwrap_or(fallback);
        errors.push(format!("{path}: {message}"));
    };
    if let Some(kinds) = schema.get("type") {
        let kinds: Vec<&str> = match kinds {
            Value::String(kind) => vec![kind.as_str()],
            Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !kinds.is_empty() && !kinds.iter().any(|k| has_type(value, k)) {
            fail(errors, "type", format!("must be {}", type_names(&kinds)));
            return;
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.iter().any(|o| json_eq(o, value))
    {
        fail(errors, "enum", format!("must be one of {}", list(options)));
        return;
    }
    match value {
        Value::String(text) => check_string(schema, text, errors, &fail),
        Value::Number(n) => check_number(schema, n, errors, &fail),
        Value::Array(items) => check_array(schema, items, path, errors, &fail),
        Value::Object(map) => check_object(schema, map, path, errors, &fail),
        _ => {}
    }
    if let Some(Value::Array(all)) = schema.get("allOf") {
        for sub in all {
            check(sub, value, path, errors);
        }
    }
}

type Fail<'a> = dyn Fn(&mut Vec<String>, &str, String) + 'a;

fn check_string(schema: &Map<String, Value>, text: &str, errors: &mut Vec<String>, fail: &Fail) {
    let length = text.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && length < min
    {
        fail(
            errors,
            "minLength",
            format!("must be at least {min} characters long"),
        );
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && length > max
    {
        fail(
            errors,
            "maxLength",
            format!("must be at most {max} characters long"),
        );
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        // A pattern that does not compile cannot be checked here; Terraform will judge it.
        let compiled = regex::RegexBuilder::new(pattern)
            .size_limit(MAX_REGEX_SIZE)
            .build();
        if let Ok(regex) = compiled
            && !regex.is_match(text)
        {
            fail(errors, "pattern", format!("must match {pattern}"));
        }
    }
}

fn check_number(
    schema: &Map<String, Value>,
    n: &serde_json::Number,
    errors: &mut Vec<String>,
    fail: &Fail,
) {
    let Some(x) = n.as_f64() else { return };
    let bound = |keyword: &str| schema.get(keyword).filter(|b| b.is_number());
    type Rule = (&'static str, fn(f64, f64) -> bool, &'static str);
    let rules: [Rule; 4] = [
        ("minimum", |x, b| x >= b, "must be at least"),
        ("exclusiveMinimum", |x, b| x > b, "must be greater than"),
        ("maximum", |x, b| x <= b, "must be at most"),
        ("exclusiveMaximum", |x, b| x < b, "must be less than"),
    ];
    for (keyword, holds, text) in rules {
        if let Some(b) = bound(keyword)
            && let Some(limit) = b.as_f64()
            && !holds(x, limit)
        {
            fail(errors, keyword, format!("{text} {b}"));
        }
    }
}

fn check_array(
    schema: &Map<String, Value>,
    items: &[Value],
    path: &str,
    errors: &mut Vec<String>,
    fail: &Fail,
) {
    let count = items.len() as u64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && count < min
    {
        fail(
            errors,
            "minItems",
            format!("must have at least {min} items"),
        );
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && count > max
    {
        fail(errors, "maxItems", format!("must have at most {max} items"));
    }
    if schema.get("uniqueItems") == Some(&Value::Bool(true))
        && items
            .iter()
            .enumerate()
            .any(|(i, a)| items[..i].iter().any(|b| json_eq(a, b)))
    {
        fail(errors, "uniqueItems", "must not contain duplicates".into());
    }
    let prefix = schema
        .get("prefixItems")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        match prefix.get(i) {
            Some(inner) => check(inner, item, &item_path, errors),
            None => match schema.get("items") {
                Some(Value::Bool(false)) => {
                    fail(
                        errors,
                        "items",
                        format!("must have exactly {} items", prefix.len()),
                    );
                    return;
                }
                Some(inner) => check(inner, item, &item_path, errors),
                None => {}
            },
        }
    }
}

fn check_object(
    schema: &Map<String, Value>,
    map: &Map<String, Value>,
    path: &str,
    errors: &mut Vec<String>,
    fail: &Fail,
) {
    let count = map.len() as u64;
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && count < min
    {
        fail(
            errors,
            "minProperties",
            format!("must have at least {min} entries"),
        );
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && count > max
    {
        fail(
            errors,
            "maxProperties",
            format!("must have at most {max} entries"),
        );
    }
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                errors.push(format!("{path}.{name}: is required"));
            }
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    for (name, value) in map {
        let field = format!("{path}.{name}");
        match properties.and_then(|p| p.get(name)) {
            Some(property) => check(property, value, &field, errors),
            None => match schema.get("additionalProperties") {
                Some(Value::Bool(false)) if path == "inputs" => {
                    errors.push(format!("{field}: is not an input of this blueprint"));
                }
                Some(Value::Bool(false)) => errors.push(format!("{field}: is not allowed")),
                Some(extra) => check(extra, value, &field, errors),
                None => {}
            },
        }
    }
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn type_names(kinds: &[&str]) -> String {
    let names: Vec<&str> = kinds
        .iter()
        .map(|k| match *k {
            "string" => "a string",
            "number" => "a number",
            "integer" => "a whole number",
            "boolean" => "true or false",
            "array" => "a list",
            "object" => "an object",
            "null" => "null",
            other => other,
        })
        .collect();
    names.join(" or ")
}

/// Values for a message: strings as they are, anything else as JSON.
fn list(values: &[Value]) -> String {
    values
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn derive_tf(tf: &str) -> Derived {
        let files = vec![("main.tf".to_string(), tf.to_string())];
        derive(Sources {
            tf_files: &files,
            tf_json_files: &[],
            readme: "",
        })
    }

    fn property(derived: &Derived, name: &str) -> Value {
        derived.schema["properties"][name].clone()
    }

    #[test]
    fn terraform_types_become_schema_types() {
        let d = derive_tf(
            r#"
variable "s" { type = string }
variable "n" { type = number }
variable "b" { type = bool }
variable "l" { type = list(string) }
variable "st" { type = set(number) }
variable "m" { type = map(bool) }
variable "a" { type = any }
variable "untyped" {}
variable "t" { type = tuple([string, number]) }
variable "o" {
  type = object({
    name = string
    size = optional(number, 2)
    tags = optional(map(string))
    nested = list(object({ port = number }))
  })
}
"#,
        );
        let p = |n| property(&d, n);
        assert_eq!(p("s"), json!({"type": ["string", "null"]}));
        assert_eq!(p("n"), json!({"type": ["number", "null"]}));
        assert_eq!(p("b"), json!({"type": ["boolean", "null"]}));
        assert_eq!(
            p("l"),
            json!({"type": ["array", "null"], "items": {"type": "string"}})
        );
        assert_eq!(
            p("st"),
            json!({"type": ["array", "null"], "items": {"type": "number"}, "uniqueItems": true})
        );
        assert_eq!(
            p("m"),
            json!({"type": ["object", "null"], "additionalProperties": {"type": "boolean"}})
        );
        assert_eq!(p("a"), json!({}));
        assert_eq!(p("untyped"), json!({}));
        assert_eq!(
            p("t"),
            json!({"type": ["array", "null"], "minItems": 2,
                   "prefixItems": [{"type": "string"}, {"type": "number"}], "items": false})
        );
        assert_eq!(
            p("o"),
            json!({
                "type": ["object", "null"],
                "properties": {
                    "name": {"type": "string"},
                    "size": {"type": "number", "default": 2},
                    "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                    "nested": {"type": "array", "items": {
                        "type": "object", "properties": {"port": {"type": "number"}},
                        "required": ["port"]}},
                },
                "required": ["name", "nested"],
            })
        );
        assert_eq!(d.schema["$schema"], DIALECT);
        assert_eq!(d.schema["additionalProperties"], false);
        assert_eq!(
            d.schema["required"],
            json!(["s", "n", "b", "l", "st", "m", "a", "untyped", "t", "o"])
        );
    }

    #[test]
    fn defaults_descriptions_sensitivity_and_nullability() {
        let d = derive_tf(
            r#"
variable "region" {
  type        = string
  default     = "eu-west-1"
  description = "Where it runs."
}
variable "password" {
  type      = string
  sensitive = true
  nullable  = false
}
variable "maybe" {
  type    = number
  default = null
}
variable "strict" {
  type     = list(string)
  default  = []
  nullable = false
}
variable "negative" {
  type    = number
  default = -3
}
"#,
        );
        assert_eq!(
            property(&d, "region"),
            json!({"type": ["string", "null"], "description": "Where it runs.", "default": "eu-west-1"})
        );
        assert_eq!(
            property(&d, "password"),
            json!({"type": "string", "writeOnly": true})
        );
        assert_eq!(
            property(&d, "maybe"),
            json!({"type": ["number", "null"], "default": null})
        );
        assert_eq!(
            property(&d, "strict"),
            json!({"type": "array", "items": {"type": "string"}, "default": []})
        );
        assert_eq!(property(&d, "negative")["default"], json!(-3));
        assert_eq!(d.schema["required"], json!(["password"]));
        assert_eq!(sensitive_inputs(&d.schema), ["password"]);
    }

    #[test]
    fn validation_blocks_become_keywords_with_their_messages() {
        let d = derive_tf(
            r#"
variable "size" {
  type = string
  validation {
    condition     = contains(["small", "large"], var.size)
    error_message = "Size must be small or large."
  }
}
variable "cidr" {
  type = string
  validation {
    condition     = can(regex("^10\\.", var.cidr))
    error_message = "The CIDR must be in 10.0.0.0/8."
  }
}
variable "name" {
  type = string
  validation {
    condition     = length(var.name) >= 3 && length(var.name) <= 20
    error_message = "Names are 3 to 20 characters."
  }
}
variable "zones" {
  type = list(string)
  validation {
    condition     = length(var.zones) > 0
    error_message = "At least one zone."
  }
}
variable "count" {
  type = number
  validation {
    condition     = var.count >= 1 && var.count < 10
    error_message = "Between 1 and 9."
  }
  validation {
    condition     = 2 <= var.count
    error_message = "At least 2."
  }
}
variable "tier" {
  type    = string
  default = null
  validation {
    condition     = var.tier == null || contains(["gold", "silver"], var.tier)
    error_message = "Gold or silver, if any."
  }
}
variable "opaque" {
  type = string
  validation {
    condition     = startswith(var.opaque, "x-")
    error_message = "Starts with x-."
  }
}
"#,
        );
        assert_eq!(
            property(&d, "size"),
            json!({
                "type": "string",
                "enum": ["small", "large"],
                "x-terrace-messages": {"enum": "Size must be small or large."},
                "x-terrace-validations": [{
                    "condition": "contains([\"small\", \"large\"], var.size)",
                    "error_message": "Size must be small or large.",
                }],
            })
        );
        let cidr = property(&d, "cidr");
        assert_eq!(cidr["pattern"], "^10\\.");
        assert_eq!(cidr["type"], "string");
        assert_eq!(
            cidr["x-terrace-messages"]["pattern"],
            "The CIDR must be in 10.0.0.0/8."
        );
        let name = property(&d, "name");
        assert_eq!(
            (name["minLength"].clone(), name["maxLength"].clone()),
            (json!(3), json!(20))
        );
        assert_eq!(
            name["x-terrace-messages"],
            json!({"minLength": "Names are 3 to 20 characters.", "maxLength": "Names are 3 to 20 characters."})
        );
        assert_eq!(property(&d, "zones")["minItems"], 1);
        let count = property(&d, "count");
        assert_eq!(count["minimum"], 1);
        assert_eq!(count["exclusiveMaximum"], 10);
        // The second validation's bound goes beside the first, with its own message.
        assert_eq!(
            count["allOf"],
            json!([{"minimum": 2, "x-terrace-messages": {"minimum": "At least 2."}}])
        );
        assert_eq!(count["x-terrace-validations"].as_array().unwrap().len(), 2);
        // A null guard keeps null allowed.
        let tier = property(&d, "tier");
        assert_eq!(tier["type"], json!(["string", "null"]));
        assert_eq!(tier["enum"], json!(["gold", "silver", null]));
        // What cannot be derived is kept for display, and does not refuse null.
        let opaque = property(&d, "opaque");
        assert_eq!(opaque["type"], json!(["string", "null"]));
        assert_eq!(
            opaque["x-terrace-validations"][0],
            json!({"condition": "startswith(var.opaque, \"x-\")", "error_message": "Starts with x-."})
        );
        assert!(opaque.get("x-terrace-messages").is_none());
    }

    #[test]
    fn conditions_about_other_values_derive_nothing() {
        let d = derive_tf(
            r#"
variable "a" {
  type = string
  validation {
    condition     = contains(["x"], lower(var.a)) || var.a == "y"
    error_message = "No."
  }
}
"#,
        );
        let a = property(&d, "a");
        assert!(a.get("enum").is_none() && a.get("pattern").is_none(), "{a}");
    }

    #[test]
    fn json_configuration_is_read_too() {
        let tf_json = r#"{
  "variable": {
    "env": {
      "type": "string",
      "description": "Environment.",
      "validation": [{
        "condition": "${contains([\"dev\", \"prod\"], var.env)}",
        "error_message": "dev or prod."
      }]
    },
    "replicas": [{"type": "number", "default": 2, "nullable": false}],
    "token": {"type": "string", "sensitive": true}
  },
  "output": {"url": {"value": "${var.env}", "description": "Where.", "sensitive": true}}
}"#;
        let files = vec![("main.tf.json".to_string(), tf_json.to_string())];
        let d = derive(Sources {
            tf_files: &[],
            tf_json_files: &files,
            readme: "",
        });
        assert_eq!(
            property(&d, "env"),
            json!({
                "type": "string",
                "description": "Environment.",
                "enum": ["dev", "prod"],
                "x-terrace-messages": {"enum": "dev or prod."},
                "x-terrace-validations": [{
                    "condition": "contains([\"dev\", \"prod\"], var.env)",
                    "error_message": "dev or prod.",
                }],
            })
        );
        assert_eq!(
            property(&d, "replicas"),
            json!({"type": "number", "default": 2})
        );
        assert_eq!(property(&d, "token")["writeOnly"], true);
        assert_eq!(d.schema["required"], json!(["env", "token"]));
        assert_eq!(
            d.outputs,
            [OutputInfo {
                name: "url".into(),
                description: "Where.".into(),
                sensitive: true
            }]
        );
    }

    #[test]
    fn outputs_and_the_readme_summary_come_along() {
        let files = vec![(
            "outputs.tf".to_string(),
            "output \"id\" {\n  value = 1\n  description = \"The id.\"\n}\noutput \"secret\" {\n  value = 2\n  sensitive = true\n}\n".to_string(),
        )];
        let readme = "# VPC\n\n[![ci](x)](y)\n\nCreates a VPC\nwith subnets.\n\n## Usage\n";
        let d = derive(Sources {
            tf_files: &files,
            tf_json_files: &[],
            readme,
        });
        assert_eq!(
            serde_json::to_value(&d.outputs).unwrap(),
            json!([
                {"name": "id", "description": "The id.", "sensitive": false},
                {"name": "secret", "description": "", "sensitive": true},
            ])
        );
        assert_eq!(d.summary, "Creates a VPC with subnets.");
        assert_eq!(d.readme, readme);
        assert_eq!(d.schema["properties"], json!({}));
    }

    const CURATED: &str = r#"
variable "size" {
  type = string
  validation {
    condition     = contains(["small", "medium", "large"], var.size)
    error_message = "Pick a size."
  }
}
variable "region" {
  type    = string
  default = "eu-west-1"
}
variable "name" { type = string }
"#;

    fn overrides(json: Value) -> BTreeMap<String, InputOverride> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn overrides_apply_on_top() {
        let d = derive_tf(CURATED);
        let (schema, problems) = apply_overrides(
            &d.schema,
            &overrides(json!({
                "size": {"allowed": ["small", "large"], "default": "small", "label": "Size", "order": 1},
                "region": {"hidden": true},
            })),
        );
        assert!(problems.is_empty(), "{problems:?}");
        let size = &schema["properties"]["size"];
        assert_eq!(size["enum"], json!(["small", "large"]));
        assert_eq!(size["default"], "small");
        assert_eq!(size["title"], "Size");
        assert_eq!(size["x-terrace-order"], 1);
        assert!(size["x-terrace-messages"].get("enum").is_none());
        assert_eq!(schema["properties"]["region"]["x-terrace-hidden"], true);
        assert_eq!(schema["required"], json!(["name"]));
    }

    #[test]
    fn overrides_that_do_not_fit_are_named() {
        let d = derive_tf(CURATED);
        let (_, problems) = apply_overrides(
            &d.schema,
            &overrides(json!({
                "size": {"allowed": ["small", "huge"], "default": 3},
                "name": {"hidden": true},
                "nope": {"label": "x"},
            })),
        );
        assert_eq!(
            problems,
            [
                "inputs.name: a hidden input needs a default (the module declares none)",
                "inputs.nope: the module has no such variable",
                "inputs.size.allowed[1]: Pick a size.",
                "inputs.size.default: must be a string",
            ]
        );
    }

    #[test]
    fn inputs_are_checked_with_one_message_per_field_and_defaults_filled() {
        let d = derive_tf(
            r#"
variable "cidr" {
  type = string
  validation {
    condition     = can(regex("^10\\.", var.cidr))
    error_message = ""
  }
}
variable "size" {
  type = string
  validation {
    condition     = contains(["small", "large"], var.size)
    error_message = ""
  }
}
variable "name" { type = string }
variable "replicas" {
  type    = number
  default = 2
  validation {
    condition     = var.replicas >= 1 && var.replicas <= 5
    error_message = "Between 1 and 5 replicas."
  }
}
variable "ports" { type = set(number) }
variable "app" {
  type = object({
    image = string
    port  = optional(number, 8080)
  })
}
"#,
        );
        let schema = &d.schema;
        let errors = validate_inputs(
            schema,
            &json!({
                "cidr": "192.168.0.0/16",
                "size": "medium",
                "replicas": 9,
                "ports": [80, 80],
                "app": {"port": "x"},
                "extra": true,
            }),
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "inputs.name: is required",
                "inputs.cidr: must match ^10\\.",
                "inputs.size: must be one of small, large",
                "inputs.replicas: Between 1 and 5 replicas.",
                "inputs.ports: must not contain duplicates",
                "inputs.app.image: is required",
                "inputs.app.port: must be a number",
                "inputs.extra: is not an input of this blueprint",
            ]
        );
        let ok = validate_inputs(
            schema,
            &json!({"cidr": "10.1.0.0/16", "size": "small", "name": "web", "ports": [80],
                    "app": {"image": "nginx"}}),
        )
        .unwrap();
        assert_eq!(ok["replicas"], 2);
        assert_eq!(ok["app"], json!({"image": "nginx", "port": 8080}));
        // Null where Terraform takes it, and not where a validation would refuse it.
        assert!(validate_inputs(schema, &json!({"name": null, "cidr": "10.0.0.0/8", "size": "small", "ports": [], "app": null})).is_ok());
        assert_eq!(
            validate_inputs(schema, &json!([1])).unwrap_err(),
            ["inputs: must be an object"]
        );
    }

    #[test]
    fn hidden_inputs_keep_their_default() {
        let d = derive_tf(CURATED);
        let (schema, _) =
            apply_overrides(&d.schema, &overrides(json!({"region": {"hidden": true}})));
        let given = json!({"size": "small", "name": "x", "region": "us-east-1"});
        assert_eq!(
            validate_inputs(&schema, &given).unwrap_err(),
            ["inputs.region: is fixed by this blueprint"]
        );
        let same = json!({"size": "small", "name": "x", "region": "eu-west-1"});
        assert!(validate_inputs(&schema, &same).is_ok());
    }

    #[test]
    fn tuples_and_lengths_are_checked() {
        let d = derive_tf(
            r#"
variable "pair" { type = tuple([string, number]) }
variable "labels" {
  type = map(string)
  validation {
    condition     = length(var.labels) <= 1
    error_message = ""
  }
}
"#,
        );
        let errors = validate_inputs(
            &d.schema,
            &json!({"pair": ["a", "b", 3], "labels": {"a": "1", "b": 2}}),
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "inputs.pair[1]: must be a number",
                "inputs.pair: must have exactly 2 items",
                "inputs.labels: must have at most 1 entries",
                "inputs.labels.b: must be a string",
            ]
        );
    }
}
