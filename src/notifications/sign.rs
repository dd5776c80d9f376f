//! Secrets, signatures and bodies of deliveries: pure functions.
//!
//! - Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
//!   keyed with the secret's bytes (the secret is shown as `whsec_<base64>`).
//! - HCP Terraform: `X-TFE-Notification-Signature: <hex HMAC-SHA512 of the body>`, keyed with
//!   the secret exactly as shown (HCP Terraform's receivers key it with the token text).

use anyhow::{Context, anyhow};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use ring::rand::SecureRandom;
use serde_json::{Value, json};

use super::views::Format;

const PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> anyhow::Result<String> {
    let mut raw = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| anyhow!("no randomness"))?;
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
}

/// The key bytes of a `whsec_` secret.
pub fn key_bytes(secret: &str) -> anyhow::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix(PREFIX).unwrap_or(secret))
        .context("the signing secret is not base64")
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

/// Hex HMAC-SHA512 of `body`, keyed with the secret's text.
pub fn tfe_signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA512, secret.as_bytes());
    hex::encode(ring::hmac::sign(&key, body).as_ref())
}

/// What a delivery's body is made of.
pub struct Message<'a> {
    pub kind: &'a str,
    pub org: &'a str,
    pub workspace: Option<&'a str>,
    pub notification: &'a str,
    pub at: DateTime<Utc>,
    pub data: &'a Value,
}

/// The body in `format`: the same bytes on every attempt.
pub fn body(format: Format, message: &Message<'_>) -> Vec<u8> {
    let value = match format {
        Format::Generic => json!({
            "type": message.kind,
            "timestamp": message.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "org": message.org,
            "workspace": message.workspace,
            "notification": message.notification,
            "data": message.data,
        }),
        Format::Slack => slack(message),
    };
    value.to_string().into_bytes()
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook message: `text` (the fallback and notification text) and blocks.
fn slack(message: &Message<'_>) -> Value {
    let place = match message.workspace {
        Some(ws) => format!("{}/{}", message.org, ws),
        None => message.org.to_string(),
    };
    let text = match message.data.get("message").and_then(Value::as_str) {
        Some(text) => escape(text),
        None => format!("{} in {}", message.kind, escape(&place)),
    };
    let context = format!(
        "`{}` · {} · Terrace notification {}",
        message.kind,
        escape(&place),
        escape(message.notification)
    );
    json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_signature_matches_the_specifications_example() {
        // The example of the Standard Webhooks specification.
        let key = key_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn tfe_signature_is_hex_hmac_sha512_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            tfe_signature("Jefe", b"what do ya want for nothing?"),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    #[test]
    fn secrets_are_fresh_and_decode_to_32_bytes() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_"));
        assert_eq!(key_bytes(&a).unwrap().len(), 32);
    }

    #[test]
    fn slack_bodies_carry_the_message_escaped() {
        let data = json!({"message": "Run 1 of <web> applied & done"});
        let message = Message {
            kind: "run:applied",
            org: "acme",
            workspace: Some("web"),
            notification: "ops",
            at: Utc::now(),
            data: &data,
        };
        let body: Value = serde_json::from_slice(&body(Format::Slack, &message)).unwrap();
        assert_eq!(body["text"], "Run 1 of &lt;web&gt; applied &amp; done");
        assert_eq!(body["blocks"][0]["text"]["type"], "mrkdwn");
        let generic: Value =
            serde_json::from_slice(&super::body(Format::Generic, &message)).unwrap();
        assert_eq!(generic["type"], "run:applied");
        assert_eq!(generic["data"], data);
    }
}
