//! Reading Terraform's HCL the way the registry and the blueprint catalogue both need it:
//! attribute lookup, object keys, descriptions (heredocs dedented) and literal values as JSON.

use hcl::expr::{HeredocStripMode, Operation, TemplateExpr, UnaryOperator};
use hcl::{Block, Expression, ObjectKey};
use serde_json::{Map, Value};

pub fn attribute<'a>(block: &'a Block, key: &str) -> Option<&'a Expression> {
    block
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .map(|a| a.expr())
}

pub fn key_text(key: &ObjectKey) -> Option<String> {
    match key {
        ObjectKey::Identifier(ident) => Some(ident.as_str().to_string()),
        ObjectKey::Expression(Expression::String(s)) => Some(s.clone()),
        ObjectKey::Expression(Expression::Variable(v)) => Some(v.as_str().to_string()),
        _ => None,
    }
}

/// A string attribute's text (heredocs dedented); any other expression as HCL text.
pub fn text(expr: &Expression) -> String {
    match expr {
        Expression::String(s) => s.clone(),
        Expression::TemplateExpr(template) => match template.as_ref() {
            TemplateExpr::Heredoc(heredoc) if heredoc.strip == HeredocStripMode::Indent => {
                dedent(&heredoc.template)
            }
            other => other.to_string().trim_end_matches('\n').to_string(),
        },
        other => hcl_text(other),
    }
}

pub fn dedent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or(l.trim_start()))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

pub fn hcl_text(expr: &Expression) -> String {
    hcl::format::to_string(expr).unwrap_or_default()
}

/// A literal expression as JSON; `None` for anything that needs evaluating.
pub fn literal(expr: &Expression) -> Option<Value> {
    match expr {
        Expression::Null => Some(Value::Null),
        Expression::Bool(b) => Some(Value::Bool(*b)),
        Expression::Number(n) => serde_json::to_value(n).ok(),
        Expression::String(s) => Some(Value::String(s.clone())),
        Expression::Array(items) => items
            .iter()
            .map(literal)
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        Expression::Object(object) => object
            .iter()
            .map(|(k, v)| Some((key_text(k)?, literal(v)?)))
            .collect::<Option<Map<_, _>>>()
            .map(Value::Object),
        Expression::Parenthesis(inner) => literal(inner),
        Expression::Operation(op) => match op.as_ref() {
            Operation::Unary(u) if u.operator == UnaryOperator::Neg => match literal(&u.expr)? {
                Value::Number(n) => negate(&n),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

pub fn negate(n: &serde_json::Number) -> Option<Value> {
    if let Some(i) = n.as_i64() {
        return Some(Value::from(i.checked_neg()?));
    }
    n.as_f64().map(|f| Value::from(-f))
}
