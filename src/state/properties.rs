//! Property tests of the state backend's decisions against small models of the rules in
//! design.md: the serial/lineage/lock decision of a write (`service::check_lock` and
//! `service::check_history`), and the lock state machine of the database lock backend
//! (lock, renew by the holder, lease expiry, takeover, release, force-unlock) on a real
//! SQLite database (and PostgreSQL when `TERRACE_TEST_POSTGRES_URL` is set), driven with a
//! controlled clock.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

use super::document::StateMeta;
use super::locks::Locks;
use super::service::{check_history, check_lock};
use super::store::{self, Decision, WriteSnapshot};
use crate::error::Error;
use crate::infra::db::Db;

// ---- the write decision ----------------------------------------------------------------

/// What the rules say about a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 423: someone else holds the lock.
    Locked,
    /// 409: a lock ID that holds nothing, a foreign lineage, a lower serial, or other bytes
    /// under the current serial.
    Conflict,
    /// The very bytes that are current: a retried write, acknowledged without a new version.
    AlreadyCurrent,
    /// A new version.
    Insert,
}

/// A version as the model keeps it. Two writes have identical bytes exactly when their
/// serial, lineage and content number agree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    serial: Option<i64>,
    lineage: Option<u8>,
    content: u8,
}

impl Version {
    fn sha256(&self) -> String {
        format!("{:?}/{:?}/{}", self.serial, self.lineage, self.content)
    }
    fn lineage_text(&self) -> Option<String> {
        self.lineage.map(|l| format!("lineage-{l}"))
    }
}

#[derive(Debug, Clone)]
enum WriteOp {
    /// A state write, with the lock ID it carries (`?ID=`).
    Write {
        version: Version,
        lock_id: Option<u8>,
    },
    /// An admin turns lineage protection on or off.
    Protection(bool),
    /// Someone takes the lock, or it is released (`None`).
    Lock(Option<u8>),
    /// Terraform retries the write that is current, byte for byte (with the holder's ID).
    Retry,
}

fn version() -> impl Strategy<Value = Version> {
    (
        prop::option::weighted(0.9, 0i64..6),
        prop::option::weighted(0.9, 0u8..2),
        0u8..2,
    )
        .prop_map(|(serial, lineage, content)| Version {
            serial,
            lineage,
            content,
        })
}

fn write_op() -> impl Strategy<Value = WriteOp> {
    prop_oneof![
        6 => (version(), prop::option::weighted(0.3, 0u8..2))
            .prop_map(|(version, lock_id)| WriteOp::Write { version, lock_id }),
        1 => any::<bool>().prop_map(WriteOp::Protection),
        2 => prop::option::of(0u8..2).prop_map(WriteOp::Lock),
        2 => Just(WriteOp::Retry),
    ]
}

/// The workspace as the model sees it.
#[derive(Debug, Clone)]
struct Workspace {
    protection: bool,
    current: Option<Version>,
    lock: Option<u8>,
    versions: i64,
}

impl Workspace {
    fn snapshot(&self) -> WriteSnapshot {
        WriteSnapshot {
            lineage_protection: self.protection,
            version_count: self.versions,
            current_serial: self.current.as_ref().and_then(|v| v.serial),
            current_lineage: self.current.as_ref().and_then(Version::lineage_text),
            current_sha256: self.current.as_ref().map(Version::sha256),
            lock_id: self.lock.map(|l| format!("lock-{l}")),
            lock_info: self
                .lock
                .map(|l| format!(r#"{{"ID":"lock-{l}"}}"#).into_bytes()),
        }
    }

    /// design.md, "Invariants that must never break", written out case by case.
    fn expected(&self, new: &Version, lock_id: Option<u8>) -> Outcome {
        // While locked, only the holder's ID writes; an ID that holds nothing was
        // force-unlocked under its writer.
        match (self.lock, lock_id) {
            (Some(holder), Some(id)) if holder == id => {}
            (Some(_), _) => return Outcome::Locked,
            (None, Some(_)) => return Outcome::Conflict,
            (None, None) => {}
        }
        let Some(current) = &self.current else {
            return Outcome::Insert;
        };
        if current == new {
            return Outcome::AlreadyCurrent;
        }
        if !self.protection {
            return Outcome::Insert;
        }
        let foreign_lineage =
            matches!((current.lineage, new.lineage), (Some(a), Some(b)) if a != b);
        let serial_not_higher =
            matches!((current.serial, new.serial), (Some(a), Some(b)) if b <= a);
        if foreign_lineage || serial_not_higher {
            Outcome::Conflict
        } else {
            Outcome::Insert
        }
    }
}

fn decide(snap: &WriteSnapshot, new: &Version, lock_id: Option<u8>) -> Outcome {
    let meta = StateMeta {
        serial: new.serial,
        lineage: new.lineage_text(),
    };
    let lock_id = lock_id.map(|l| format!("lock-{l}"));
    let decided = check_lock(snap, lock_id.as_deref())
        .and_then(|()| check_history(snap, &meta, &new.sha256()));
    match decided {
        Ok(Decision::Insert) => Outcome::Insert,
        Ok(Decision::AlreadyCurrent) => Outcome::AlreadyCurrent,
        Err(Error::Locked(info)) => {
            // Terraform reads the holder from the 423 body: it must be the holder's.
            assert_eq!(
                Some(info.to_vec()),
                snap.lock_info,
                "423 without the holder's info"
            );
            Outcome::Locked
        }
        Err(Error::Conflict(_)) => Outcome::Conflict,
        Err(other) => panic!("unexpected answer to a write: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every write in a generated history gets the answer the rules give, and the history
    /// that results keeps the invariants: while protection is on, the current lineage never
    /// changes to another one and serials only go up.
    #[test]
    fn write_decisions_follow_the_serial_lineage_and_lock_rules(
        protection in any::<bool>(),
        ops in prop::collection::vec(write_op(), 1..40),
    ) {
        let mut ws = Workspace { protection, current: None, lock: None, versions: 0 };
        for op in ops {
            let (new, lock_id) = match op {
                WriteOp::Protection(on) => { ws.protection = on; continue; }
                WriteOp::Lock(holder) => { ws.lock = holder; continue; }
                WriteOp::Write { version, lock_id } => (version, lock_id),
                WriteOp::Retry => match &ws.current {
                    Some(current) => (current.clone(), ws.lock),
                    None => continue,
                },
            };
            let snap = ws.snapshot();
            let expected = ws.expected(&new, lock_id);
            let actual = decide(&snap, &new, lock_id);
            prop_assert_eq!(actual, expected, "write {:?} with lock {:?} onto {:?}", new, lock_id, ws);
            if actual == Outcome::Insert {
                if ws.protection && let Some(current) = &ws.current {
                    if let (Some(a), Some(b)) = (current.lineage, new.lineage) {
                        prop_assert_eq!(a, b, "protection let a foreign lineage in");
                    }
                    if let (Some(a), Some(b)) = (current.serial, new.serial) {
                        prop_assert!(b > a, "protection let serial {} follow {}", b, a);
                    }
                }
                ws.current = Some(new);
                ws.versions += 1;
            }
        }
    }

    /// Identical bytes are always a retried write, whatever the protection, the serials
    /// and the lineage; but only for the lock holder (or with no lock at all).
    #[test]
    fn the_current_bytes_again_are_already_current(
        current in version(),
        protection in any::<bool>(),
        lock in prop::option::of(0u8..2),
    ) {
        let ws = Workspace { protection, current: Some(current.clone()), lock, versions: 1 };
        prop_assert_eq!(decide(&ws.snapshot(), &current, lock), Outcome::AlreadyCurrent);
        if let Some(holder) = lock {
            prop_assert_eq!(decide(&ws.snapshot(), &current, None), Outcome::Locked);
            prop_assert_eq!(decide(&ws.snapshot(), &current, Some(holder + 1)), Outcome::Locked);
        }
    }
}

// ---- the lock state machine ------------------------------------------------------------

#[derive(Debug, Clone)]
enum LockOp {
    /// LOCK with this ID.
    Lock(u8),
    /// A write under this ID renews the lease (when the ID holds the lock).
    Renew(u8),
    /// UNLOCK with this ID.
    Unlock(u8),
    /// UNLOCK with an empty body: `terraform force-unlock`.
    ForceUnlock,
    /// Time passes, in milliseconds.
    Wait(i64),
    /// Exactly the lease passes, give or take this many milliseconds: the edge of staleness.
    WaitLease(i64),
}

fn lock_op() -> impl Strategy<Value = LockOp> {
    prop_oneof![
        4 => (0u8..3).prop_map(LockOp::Lock),
        2 => (0u8..3).prop_map(LockOp::Renew),
        2 => (0u8..3).prop_map(LockOp::Unlock),
        1 => Just(LockOp::ForceUnlock),
        // Around the leases below, with sub-second steps.
        3 => (0i64..40_000).prop_map(LockOp::Wait),
        1 => (-1i64..=1).prop_map(LockOp::WaitLease),
    ]
}

/// What a LOCK or UNLOCK answers over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    /// 423, with the holder's ID.
    Locked(u8),
}

#[derive(Debug, Clone)]
struct Held {
    id: u8,
    created_at: DateTime<Utc>,
    renewed_at: DateTime<Utc>,
}

/// The lock as the model keeps it, for a workspace with lease `lease` (seconds) that lets
/// a stale lock be taken over when `expire_stale` is set.
#[derive(Debug)]
struct LockModel {
    lease: Option<i64>,
    expire_stale: bool,
    held: Option<Held>,
}

impl LockModel {
    fn stale(&self, held: &Held, now: DateTime<Utc>) -> bool {
        self.lease
            .is_some_and(|lease| held.renewed_at + Duration::seconds(lease) < now)
    }

    fn lock(&mut self, id: u8, now: DateTime<Utc>) -> Answer {
        let replaceable = self
            .held
            .as_ref()
            .is_some_and(|held| self.expire_stale && self.stale(held, now));
        match &mut self.held {
            Some(held) if held.id == id => {
                held.renewed_at = now;
                Answer::Ok
            }
            Some(held) if !replaceable => Answer::Locked(held.id),
            _ => {
                self.held = Some(Held {
                    id,
                    created_at: now,
                    renewed_at: now,
                });
                Answer::Ok
            }
        }
    }

    fn renew(&mut self, id: u8, now: DateTime<Utc>) {
        if let Some(held) = self.held.as_mut().filter(|h| h.id == id) {
            held.renewed_at = now;
        }
    }

    fn unlock(&mut self, id: Option<u8>) -> Answer {
        match (&self.held, id) {
            (None, _) => Answer::Ok,
            (Some(_), None) => {
                self.held = None;
                Answer::Ok
            }
            (Some(held), Some(id)) if held.id == id => {
                self.held = None;
                Answer::Ok
            }
            (Some(held), Some(_)) => Answer::Locked(held.id),
        }
    }
}

fn lock_id(id: u8) -> String {
    format!("3f2c9a1e-0000-4000-8000-00000000000{id}")
}

fn lock_body(id: u8) -> Vec<u8> {
    format!(
        r#"{{"ID":"{}","Operation":"OperationTypeApply","Who":"user{id}@host"}}"#,
        lock_id(id)
    )
    .into_bytes()
}

fn id_of(lock: &str) -> u8 {
    (0..10)
        .find(|&i| lock_id(i) == lock)
        .unwrap_or_else(|| panic!("unknown lock ID {lock}"))
}

/// LOCK as `service::acquire_lock` does it: the cut-off for a takeover from the workspace's
/// settings, then the backend's answer.
async fn real_lock(
    locks: &Locks,
    ws: i64,
    model: &LockModel,
    id: u8,
    now: DateTime<Utc>,
) -> Answer {
    let stale_before = match model.lease {
        Some(lease) if model.expire_stale => now.checked_sub_signed(Duration::seconds(lease)),
        _ => None,
    };
    let who = format!("token:user{id}#1");
    let holder = locks
        .acquire(ws, &lock_id(id), &lock_body(id), &who, now, stale_before)
        .await
        .unwrap();
    match holder {
        None => Answer::Ok,
        Some(h) if h.lock_id == lock_id(id) => Answer::Ok,
        Some(h) => {
            assert_eq!(
                h.info,
                lock_body(id_of(&h.lock_id)),
                "423 carries the holder's body"
            );
            Answer::Locked(id_of(&h.lock_id))
        }
    }
}

/// UNLOCK as `service::release_lock` does it.
async fn real_unlock(locks: &Locks, ws: i64, id: Option<u8>) -> Answer {
    let lock = id.map(lock_id);
    if locks.release(ws, lock.as_deref()).await.unwrap() || lock.is_none() {
        return Answer::Ok;
    }
    match locks.find(ws).await.unwrap() {
        Some(holder) => Answer::Locked(id_of(&holder.lock_id)),
        None => Answer::Ok,
    }
}

async fn run_lock_case(
    db: &Db,
    org_id: i64,
    lease: Option<i64>,
    expire_stale: bool,
    ops: Vec<LockOp>,
) -> std::result::Result<(), TestCaseError> {
    let locks = Locks::Database(db.clone());
    // A fixed start with a fraction of a second, so that stored times compare as times.
    let mut now =
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap() + Duration::microseconds(123_456);
    let name = format!("ws-{}", uuid::Uuid::new_v4().simple());
    let ws = store::ensure_workspace(db, org_id, &name, now)
        .await
        .unwrap()
        .id;
    let mut model = LockModel {
        lease,
        expire_stale,
        held: None,
    };
    for (step, op) in ops.iter().enumerate() {
        match *op {
            LockOp::Lock(id) => {
                let real = real_lock(&locks, ws, &model, id, now).await;
                let expected = model.lock(id, now);
                prop_assert_eq!(real, expected, "step {}: {:?}", step, op);
            }
            LockOp::Renew(id) => {
                locks.renew(ws, &lock_id(id), now).await.unwrap();
                model.renew(id, now);
            }
            LockOp::Unlock(id) => {
                let real = real_unlock(&locks, ws, Some(id)).await;
                prop_assert_eq!(real, model.unlock(Some(id)), "step {}: {:?}", step, op);
            }
            LockOp::ForceUnlock => {
                let real = real_unlock(&locks, ws, None).await;
                prop_assert_eq!(real, model.unlock(None), "step {}: {:?}", step, op);
            }
            LockOp::Wait(ms) => now += Duration::milliseconds(ms),
            LockOp::WaitLease(ms) => {
                now += Duration::seconds(lease.unwrap_or(1)) + Duration::milliseconds(ms);
            }
        }
        // Who holds it, since when, and whether it is stale, as the API would show it.
        let holder = locks.find(ws).await.unwrap();
        match (&holder, &model.held) {
            (None, None) => {}
            (Some(real), Some(held)) => {
                prop_assert_eq!(id_of(&real.lock_id), held.id, "step {}: holder", step);
                prop_assert_eq!(
                    real.renewed_at,
                    held.renewed_at,
                    "step {}: renewed_at",
                    step
                );
                prop_assert_eq!(
                    real.created_at,
                    held.created_at,
                    "step {}: created_at",
                    step
                );
                prop_assert_eq!(
                    real.info.clone(),
                    lock_body(held.id),
                    "step {}: a renewal keeps the holder's body",
                    step
                );
                prop_assert_eq!(
                    super::lock::is_stale(real.renewed_at, lease, now),
                    model.stale(held, now),
                    "step {}: staleness",
                    step
                );
            }
            (real, held) => {
                prop_assert!(false, "step {}: holder {:?}, model {:?}", step, real, held)
            }
        }
        // A write under each ID is decided against this holder as `check_lock` sees it.
        let snap = WriteSnapshot {
            lineage_protection: true,
            version_count: 0,
            current_serial: None,
            current_lineage: None,
            current_sha256: None,
            lock_id: holder.as_ref().map(|h| h.lock_id.clone()),
            lock_info: holder.as_ref().map(|h| h.info.clone()),
        };
        for id in 0..3 {
            let allowed = check_lock(&snap, Some(&lock_id(id))).is_ok();
            prop_assert_eq!(allowed, model.held.as_ref().is_some_and(|h| h.id == id));
        }
        prop_assert_eq!(check_lock(&snap, None).is_ok(), model.held.is_none());
    }
    Ok(())
}

fn lock_machine_on(db: Db, runtime: &tokio::runtime::Runtime) {
    let org = crate::names::OrgName::parse("props").unwrap();
    let org_id = runtime
        .block_on(crate::identity::orgs::create_org(&db, &org))
        .unwrap();
    let config = ProptestConfig::with_cases(96);
    proptest!(config, |(
        lease in prop::option::weighted(0.8, 1i64..30),
        expire_stale in any::<bool>(),
        ops in prop::collection::vec(lock_op(), 1..32),
    )| {
        runtime.block_on(run_lock_case(&db, org_id, lease, expire_stale, ops))?;
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn lock_state_machine_matches_the_model_on_sqlite() {
    let runtime = runtime();
    let (db, _dir) = runtime.block_on(crate::infra::db::testing::sqlite());
    lock_machine_on(db, &runtime);
}

#[test]
fn lock_state_machine_matches_the_model_on_postgres() {
    let runtime = runtime();
    let Some(db) = runtime.block_on(crate::infra::db::testing::postgres()) else {
        eprintln!("skipping: TERRACE_TEST_POSTGRES_URL is not set");
        return;
    };
    lock_machine_on(db, &runtime);
}
