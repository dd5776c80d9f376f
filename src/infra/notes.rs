//! Per-request notes: who is calling and what the request does to what. Authentication and
//! authorization write them; the audit trail's middleware opens a note per request and reads
//! it after the response. Outside a request (CLI, background jobs) writing a note does nothing.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

tokio::task_local! {
    static NOTE: Arc<Mutex<Note>>;
}

/// What authentication and authorization learned about the current request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Note {
    pub actor: Option<String>,
    pub token_id: Option<String>,
    pub access: Option<Access>,
    /// What the request did, in the words of the feature, when that says more than the access
    /// decision (`run:apply` on `run:42` rather than `state:write` on the workspace); later
    /// authorization checks made only to build the answer do not replace it.
    pub operation: Option<(&'static str, String)>,
    /// Further events the request caused besides its own (a user created at first sign-in,
    /// team memberships the IdP's groups changed), each its own row in the trail.
    pub events: Vec<Access>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub action: &'static str,
    pub resource: String,
    pub org_id: Option<i64>,
}

fn with_note(f: impl FnOnce(&mut Note)) {
    let _ = NOTE.try_with(|note| f(&mut note.lock().unwrap_or_else(PoisonError::into_inner)));
}

/// Whether the current task runs inside a request's note.
pub fn in_request() -> bool {
    NOTE.try_with(|_| ()).is_ok()
}

/// Records who is calling (set by authentication).
pub fn note_actor(actor: String, token_id: Option<String>) {
    with_note(|note| {
        note.actor = Some(actor);
        note.token_id = token_id;
    });
}

/// Records what the request does to what (set by authorization, allowed or not). The last
/// decision of a request wins.
pub fn note_access(action: &'static str, resource: String, org_id: Option<i64>) {
    with_note(|note| {
        note.access = Some(Access {
            action,
            resource,
            org_id,
        });
    });
}

/// Records the operation an authorized request performs (see [`Note::operation`]).
pub fn note_operation(action: &'static str, resource: String) {
    with_note(|note| note.operation = Some((action, resource)));
}

/// Records a further event the request caused (see [`Note::events`]); at most 100 are kept.
pub fn note_event(action: &'static str, resource: String, org_id: Option<i64>) {
    with_note(|note| {
        if note.events.len() < 100 {
            note.events.push(Access {
                action,
                resource,
                org_id,
            });
        }
    });
}

/// Runs `fut` with `note` as the current request's note.
pub async fn scope<F: Future>(note: Arc<Mutex<Note>>, fut: F) -> F::Output {
    NOTE.scope(note, fut).await
}

/// Empties `note`, returning what it held.
pub fn take(note: &Mutex<Note>) -> Note {
    std::mem::take(&mut *note.lock().unwrap_or_else(PoisonError::into_inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notes_outside_a_request_are_ignored() {
        assert!(!in_request());
        note_actor("user:alice".into(), None);
        note_access("state:read", "workspace:prod".into(), Some(1));
        // Nothing leaked into the next request's note.
        let note = Arc::new(Mutex::new(Note::default()));
        let inside = scope(note.clone(), async { in_request() }).await;
        assert!(inside);
        assert_eq!(take(&note), Note::default());
    }

    #[tokio::test]
    async fn the_last_decision_wins() {
        let note = Arc::new(Mutex::new(Note::default()));
        scope(note.clone(), async {
            note_actor("token:ci#12".into(), Some("12".into()));
            note_access("state:read", "workspace:prod".into(), Some(1));
            note_access("state:read-outputs", "workspace:prod".into(), Some(1));
        })
        .await;
        let note = take(&note);
        assert_eq!(note.actor.as_deref(), Some("token:ci#12"));
        assert_eq!(note.token_id.as_deref(), Some("12"));
        let access = note.access.expect("an access decision");
        assert_eq!(access.action, "state:read-outputs");
        assert_eq!(access.org_id, Some(1));
    }
}
