//! The delivery worker: claims due deliveries from the outbox with a lease, signs and posts
//! them, logs every attempt and schedules retries. Runs on every replica (`jobs` starts it);
//! a delivery whose worker died is claimed again once its lease runs out, so none is lost to
//! a crash or a restart (a receiver may then see one twice: the `webhook-id` is the same).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::store::{self, Claimed, Outcome};
use super::views::Format;
use super::{Ctx, sign};
use crate::error::{Error, Result};

/// Deliveries claimed at a time, all made at once, so that each is done well within its
/// lease (one attempt's timeout and a margin).
const BATCH: usize = 8;
/// The longest wait between two attempts of one delivery (before `Retry-After`).
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// How often an idle worker looks for retries that became due (other replicas' events too).
const POLL: Duration = Duration::from_secs(1);
/// Longest error text kept in the log.
const MAX_ERROR: usize = 500;

/// Delivers until the task is stopped, woken at once by events raised in this process.
pub async fn run_worker(ctx: Ctx, holder: String) {
    loop {
        let notified = super::wake().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match deliver_due(&ctx, &holder).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "notification delivery pass failed; will retry"),
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One pass: claims the due deliveries (up to a batch) and makes one attempt of each.
/// Answers how many were attempted.
pub async fn deliver_due(ctx: &Ctx, holder: &str) -> Result<usize> {
    let lease = ctx.settings.timeout + Duration::from_secs(15);
    let until = Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::zero());
    let claimed = {
        let _turn = ctx.write_turn().await;
        store::claim(&ctx.db, holder, until, BATCH as i64).await?
    };
    let count = claimed.len();
    futures::stream::iter(claimed)
        .for_each_concurrent(BATCH, |delivery| async move {
            if let Err(e) = attempt(ctx, holder, delivery).await {
                tracing::warn!(error = %e, "recording a notification attempt failed");
            }
        })
        .await;
    Ok(count)
}

/// What one POST came to.
enum Sent {
    /// The receiver answered 2xx.
    Delivered(u16),
    /// It answered something else; `Retry-After`, if it sent one.
    Refused(u16, Option<Duration>),
    /// No answer (connection, TLS, timeout); `permanent` when retrying cannot help.
    Failed { error: String, permanent: bool },
}

async fn attempt(ctx: &Ctx, holder: &str, d: Claimed) -> Result<()> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let sent = send(ctx, &d).await;
    let duration_ms = i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
    let now = Utc::now();
    let (status_code, error, retry, retry_after) = match &sent {
        Sent::Delivered(code) => (Some(i64::from(*code)), None, false, None),
        Sent::Refused(code, after) => (
            Some(i64::from(*code)),
            Some(format!("the receiver answered {code}")),
            true,
            *after,
        ),
        Sent::Failed { error, permanent } => (None, Some(error.clone()), !permanent, None),
    };
    let next = retry
        .then(|| next_attempt(&ctx.settings, d.attempts, d.created_at, now, retry_after))
        .flatten();
    let status = match (&sent, next) {
        (Sent::Delivered(_), _) => "delivered",
        (_, Some(_)) => "pending",
        _ => "failed",
    };
    let error = match (status, error) {
        ("failed", Some(e)) if retry => Some(format!("{e}; gave up after {} attempts", d.attempts)),
        (_, e) => e,
    };
    let error: Option<String> = error.map(|e| e.chars().take(MAX_ERROR).collect());
    let recorded = {
        let _turn = ctx.write_turn().await;
        store::record_attempt(
            &ctx.db,
            &d.id,
            holder,
            Outcome {
                attempt: d.attempts,
                started_at,
                duration_ms,
                status_code,
                error: error.as_deref(),
                status,
                next_attempt_at: next,
            },
        )
        .await?
    };
    if !recorded {
        tracing::warn!(delivery = %d.id, "lost the lease on a notification delivery");
    } else if status != "delivered" {
        tracing::info!(
            delivery = %d.id,
            notification = %d.notification,
            attempt = d.attempts,
            status,
            error = error.as_deref().unwrap_or(""),
            "notification not delivered"
        );
    }
    Ok(())
}

/// When attempt `attempts + 1` is due: the base delay doubled per attempt made (at most an
/// hour), or later if the receiver said so; `None` once that is past the retry limit.
fn next_attempt(
    settings: &super::Settings,
    attempts: i64,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    retry_after: Option<Duration>,
) -> Option<DateTime<Utc>> {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let backoff = settings
        .retry_base
        .saturating_mul(1u32 << doublings)
        .min(MAX_DELAY.max(settings.retry_base));
    let delay = retry_after.map_or(backoff, |after| after.max(backoff));
    let next = now + chrono::Duration::from_std(delay).ok()?;
    let limit = created_at + chrono::Duration::from_std(settings.retry_limit).ok()?;
    (next <= limit).then_some(next)
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

async fn send(ctx: &Ctx, d: &Claimed) -> Sent {
    let failed = |error: String, permanent: bool| Sent::Failed { error, permanent };
    let secret = match secret(ctx, &d.secret_blob).await {
        Ok(secret) => secret,
        Err(e) => return failed(format!("the signing secret cannot be read: {e}"), false),
    };
    let key = match sign::key_bytes(&secret) {
        Ok(key) => key,
        Err(e) => return failed(e.to_string(), true),
    };
    if let Err(why) = super::guard::check(&d.url, ctx.settings.allow_private).await {
        return failed(format!("refused: the URL {why}"), true);
    }
    let data: serde_json::Value = serde_json::from_str(&d.payload).unwrap_or_default();
    let format = Format::parse(&d.format).unwrap_or(Format::Generic);
    let body = sign::body(
        format,
        &sign::Message {
            kind: &d.kind,
            org: &d.org,
            workspace: d.workspace.as_deref(),
            notification: &d.notification,
            at: d.event_at,
            data: &data,
        },
    );
    let timestamp = Utc::now().timestamp();
    let request = ctx
        .client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            sign::standard_signature(&key, &d.id, timestamp, &body),
        )
        .header(
            "x-tfe-notification-signature",
            sign::tfe_signature(&secret, &body),
        )
        .body(body);
    match request.send().await {
        Ok(response) => {
            let code = response.status().as_u16();
            if response.status().is_success() {
                return Sent::Delivered(code);
            }
            let after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, Utc::now()));
            Sent::Refused(code, after)
        }
        Err(e) => failed(describe(&e), false),
    }
}

/// The error and its causes (never the URL, which may carry a credential).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn secret(ctx: &Ctx, blob_id: &str) -> Result<String> {
    let blob = store::blob(&ctx.db, blob_id)
        .await?
        .ok_or(Error::NotFound("secret"))?;
    let bytes = ctx.blobs.get(&blob).await?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::Internal(anyhow::anyhow!("secret")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_until_the_limit() {
        let settings = super::super::Settings {
            retry_base: Duration::from_secs(30),
            retry_limit: Duration::from_secs(24 * 3600),
            ..Default::default()
        };
        let start = Utc::now();
        let after = |n, now| next_attempt(&settings, n, start, now, None).map(|t| t - now);
        assert_eq!(after(1, start), Some(chrono::Duration::seconds(30)));
        assert_eq!(after(2, start), Some(chrono::Duration::seconds(60)));
        assert_eq!(after(5, start), Some(chrono::Duration::seconds(480)));
        assert_eq!(after(20, start), Some(chrono::Duration::seconds(3600)));
        // Past the limit: no further attempt.
        let late = start + chrono::Duration::hours(23) + chrono::Duration::minutes(30);
        assert_eq!(after(30, late), None);
        // Retry-After wins when it is longer, never when shorter.
        let ra = next_attempt(&settings, 1, start, start, Some(Duration::from_secs(120)));
        assert_eq!(ra.map(|t| t - start), Some(chrono::Duration::seconds(120)));
        let ra = next_attempt(&settings, 3, start, start, Some(Duration::from_secs(1)));
        assert_eq!(ra.map(|t| t - start), Some(chrono::Duration::seconds(120)));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
