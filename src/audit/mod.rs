//! Append-only audit trail of every mutation and every state read.
//!
//! The request middleware opens a per-request note (a task-local, [`begin`]); authentication
//! fills in the actor and authorization the action and resource; after the response the note
//! and the status become one `audit_events` row ([`Recording::record`]), written in batches
//! off the request path.

mod routes;
mod service;
mod sink;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};

use crate::infra::notes::{self, Note};

pub use sink::AuditSink;

/// Records an event that no request carries (a command run on the database, such as a
/// master key rotation), written at once.
pub async fn record_system(
    db: &crate::infra::db::Db,
    action: &str,
    resource: &str,
    succeeded: bool,
) -> crate::error::Result<()> {
    let event = AuditEvent {
        org_id: None,
        occurred_at: Utc::now(),
        actor: "system".into(),
        token_id: None,
        action: action.to_string(),
        resource: resource.to_string(),
        outcome: if succeeded { "success" } else { "failed" },
        status: if succeeded { 200 } else { 500 },
        source: None,
        request_id: None,
    };
    store::insert(db, &[event])
        .await
        .map_err(|e| crate::error::Error::Internal(e.into()))
}

pub fn routes() -> Router<crate::identity::Ctx> {
    routes::routes()
}

/// One row of the trail.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub org_id: Option<i64>,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub token_id: Option<String>,
    pub action: String,
    pub resource: String,
    pub outcome: &'static str,
    pub status: u16,
    pub source: Option<String>,
    pub request_id: Option<String>,
}

/// The outcomes the trail knows, as stored and filtered on.
pub const OUTCOMES: [&str; 4] = ["success", "denied", "rate_limited", "failed"];

/// Classifies a response status.
pub fn outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=399 => "success",
        401 | 403 | 404 => "denied",
        429 => "rate_limited",
        _ => "failed",
    }
}

/// Routes whose GET returns state content (the web UI's download and diff pages too); other
/// reads are not recorded.
const STATE_READS: [&str; 4] = [
    "/state/{org}/{workspace}",
    "/api/v1/orgs/{org}/workspaces/{workspace}/state-versions/{serial}",
    "/ui/orgs/{org}/workspaces/{ws}/versions/{serial}/download",
    "/ui/orgs/{org}/workspaces/{ws}/diff",
];

/// Other reads that are recorded: a single sign-on ends in a GET from the browser.
const RECORDED_GETS: [&str; 1] = ["/oauth/sso/callback"];

/// Never recorded: probes and scrapes would drown the trail.
const UNRECORDED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

fn is_recorded(method: &Method, route: Option<&str>) -> bool {
    if route.is_some_and(|r| UNRECORDED.contains(&r)) {
        return false;
    }
    match *method {
        Method::GET => {
            route.is_some_and(|r| STATE_READS.contains(&r) || RECORDED_GETS.contains(&r))
        }
        Method::HEAD | Method::OPTIONS => false,
        _ => true,
    }
}

/// Client-sent values are capped so one request cannot bloat the trail.
const MAX_FIELD: usize = 512;

fn capped(text: &str) -> String {
    let mut end = text.len().min(MAX_FIELD);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// What the middleware knows before the handler runs: the fallbacks for a request that never
/// reached authentication or authorization.
#[derive(Debug)]
struct Draft {
    method: String,
    path: String,
    source: Option<String>,
    request_id: Option<String>,
}

impl Draft {
    /// The request's event, then any further events it noted.
    fn finish(self, note: &Mutex<Note>, status: StatusCode) -> Vec<AuditEvent> {
        let note = notes::take(note);
        let further = note.events;
        let (action, resource, org_id) = match (note.operation, note.access) {
            (Some((action, resource)), access) => {
                (action.to_string(), resource, access.and_then(|a| a.org_id))
            }
            (None, Some(a)) => (a.action.to_string(), a.resource, a.org_id),
            (None, None) => (format!("http:{}", self.method), self.path, None),
        };
        let event = AuditEvent {
            org_id,
            occurred_at: Utc::now(),
            actor: note.actor.unwrap_or_else(|| "anonymous".into()),
            token_id: note.token_id,
            action,
            resource,
            outcome: outcome(status),
            status: status.as_u16(),
            source: self.source,
            request_id: self.request_id,
        };
        let mut events = Vec::with_capacity(1 + further.len());
        for access in further {
            events.push(AuditEvent {
                org_id: access.org_id,
                action: access.action.to_string(),
                resource: access.resource,
                ..event.clone()
            });
        }
        events.insert(0, event);
        events
    }
}

/// Keeps the request on record if its future is dropped early: before the handler answered
/// (the client went away; the mutation may still have happened) or while the event waited
/// for room in the queue.
struct Pending {
    sink: AuditSink,
    note: Arc<Mutex<Note>>,
    draft: Option<Draft>,
    events: Vec<AuditEvent>,
}

/// nginx's "client closed request": no real response status exists.
const CLIENT_CLOSED: u16 = 499;

impl Drop for Pending {
    fn drop(&mut self) {
        let status = StatusCode::from_u16(CLIENT_CLOSED).unwrap_or(StatusCode::BAD_REQUEST);
        let mut events = std::mem::take(&mut self.events);
        if let Some(draft) = self.draft.take() {
            events = draft.finish(&self.note, status);
        }
        if events.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let sink = self.sink.clone();
                runtime.spawn(async move {
                    for event in events {
                        sink.send(event).await;
                    }
                });
            }
            Err(_) => tracing::error!(?events, "audit events lost: no runtime"),
        }
    }
}

/// A request being recorded: opened by [`begin`] before the request runs, closed by
/// [`Recording::record`] with its response.
pub struct Recording {
    pending: Pending,
}

/// The audit middleware's first half: whether `req` is recorded and, if so, what is known
/// before it runs. Synchronous, so the middleware can hand the request on without waiting.
pub fn begin(sink: &AuditSink, req: &Request) -> Option<Recording> {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    if !is_recorded(req.method(), route) {
        return None;
    }
    let draft = Draft {
        method: req.method().as_str().to_ascii_lowercase(),
        // The path only: query strings may carry signatures and lock ids.
        path: capped(req.uri().path()),
        // The peer itself; forwarding headers are client-controlled.
        source: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_canonical().to_string()),
        request_id: req
            .headers()
            .get(crate::http::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(capped),
    };
    Some(Recording {
        pending: Pending {
            sink: sink.clone(),
            note: Arc::new(Mutex::new(Note::default())),
            draft: Some(draft),
            events: Vec::new(),
        },
    })
}

impl Recording {
    /// Runs the request (`response`) inside its note and queues the event. Dropped before
    /// the end, the request is still recorded (see [`Pending`]).
    pub async fn record(self, response: impl Future<Output = Response>) -> Response {
        let mut pending = self.pending;
        let note = pending.note.clone();
        let response = notes::scope(note.clone(), response).await;
        if let Some(draft) = pending.draft.take() {
            pending.events = draft.finish(&note, response.status());
        }
        let sink = pending.sink.clone();
        sink.send_all_from(&mut pending.events).await;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_status() {
        assert_eq!(outcome(StatusCode::OK), "success");
        assert_eq!(outcome(StatusCode::CREATED), "success");
        assert_eq!(outcome(StatusCode::FOUND), "success");
        assert_eq!(outcome(StatusCode::UNAUTHORIZED), "denied");
        assert_eq!(outcome(StatusCode::FORBIDDEN), "denied");
        assert_eq!(outcome(StatusCode::NOT_FOUND), "denied");
        assert_eq!(outcome(StatusCode::TOO_MANY_REQUESTS), "rate_limited");
        assert_eq!(outcome(StatusCode::CONFLICT), "failed");
        assert_eq!(outcome(StatusCode::INTERNAL_SERVER_ERROR), "failed");
    }

    #[test]
    fn mutations_and_state_reads_are_recorded() {
        let lock = Method::from_bytes(b"LOCK").unwrap();
        assert!(is_recorded(&lock, Some("/state/{org}/{workspace}")));
        assert!(is_recorded(&Method::POST, Some("/oauth/token")));
        assert!(is_recorded(&Method::DELETE, None));
        assert!(is_recorded(&Method::GET, Some("/state/{org}/{workspace}")));
        assert!(!is_recorded(
            &Method::HEAD,
            Some("/state/{org}/{workspace}")
        ));
        assert!(!is_recorded(
            &Method::GET,
            Some("/api/v1/orgs/{org}/workspaces")
        ));
        assert!(!is_recorded(&Method::GET, None));
        assert!(!is_recorded(&Method::POST, Some("/healthz")));
    }

    #[tokio::test]
    async fn the_last_decision_wins() {
        let note = Arc::new(Mutex::new(Note::default()));
        notes::scope(note.clone(), async {
            notes::note_actor("token:ci#12".into(), Some("12".into()));
            notes::note_access("state:read", "workspace:prod".into(), Some(1));
            notes::note_access("state:read-outputs", "workspace:prod".into(), Some(1));
        })
        .await;
        let draft = Draft {
            method: "get".into(),
            path: "/state/acme/prod".into(),
            source: None,
            request_id: Some("r1".into()),
        };
        let events = draft.finish(&note, StatusCode::OK);
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.actor, "token:ci#12");
        assert_eq!(event.token_id.as_deref(), Some("12"));
        assert_eq!(event.action, "state:read-outputs");
        assert_eq!(event.org_id, Some(1));
        assert_eq!(event.outcome, "success");
    }

    #[tokio::test]
    async fn further_events_become_rows_of_their_own() {
        let note = Arc::new(Mutex::new(Note::default()));
        notes::scope(note.clone(), async {
            notes::note_actor("user:alice".into(), None);
            notes::note_access("user:sso-login", "user:alice".into(), None);
            notes::note_event("user:create-jit", "user:alice".into(), None);
            notes::note_event("team:join-by-idp-group", "team:acme/ops".into(), Some(7));
        })
        .await;
        let draft = Draft {
            method: "get".into(),
            path: "/oauth/sso/callback".into(),
            source: None,
            request_id: Some("r2".into()),
        };
        let events = draft.finish(&note, StatusCode::SEE_OTHER);
        let rows: Vec<(&str, &str, Option<i64>, &str)> = events
            .iter()
            .map(|e| {
                (
                    e.action.as_str(),
                    e.resource.as_str(),
                    e.org_id,
                    e.actor.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("user:sso-login", "user:alice", None, "user:alice"),
                ("user:create-jit", "user:alice", None, "user:alice"),
                (
                    "team:join-by-idp-group",
                    "team:acme/ops",
                    Some(7),
                    "user:alice"
                ),
            ]
        );
        assert!(events.iter().all(|e| e.request_id.as_deref() == Some("r2")));
    }

    #[test]
    fn without_a_decision_the_method_and_path_stand_in() {
        let draft = Draft {
            method: "post".into(),
            path: "/state/acme/prod".into(),
            source: Some("10.0.0.1".into()),
            request_id: None,
        };
        let events = draft.finish(&Mutex::default(), StatusCode::UNAUTHORIZED);
        let event = &events[0];
        assert_eq!(event.actor, "anonymous");
        assert_eq!(event.action, "http:post");
        assert_eq!(event.resource, "/state/acme/prod");
        assert_eq!(event.org_id, None);
        assert_eq!(event.outcome, "denied");
    }

    #[test]
    fn long_values_are_capped_on_a_char_boundary() {
        let text = "é".repeat(MAX_FIELD);
        let capped = capped(&text);
        assert!(capped.len() <= MAX_FIELD);
        assert!(capped.chars().all(|c| c == 'é'));
    }
}
