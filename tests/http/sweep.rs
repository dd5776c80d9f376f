//! The orphan sweep deletes only old objects that no row refers to.

use std::time::{Duration, SystemTime};

use crate::support::{TestApp, state};

async fn the_sweep_removes_old_unreferenced_objects_only(app: TestApp) {
    app.write_state("prod", state("l", 1), None, &app.write_token)
        .await
        .assert_status(axum::http::StatusCode::OK);
    let committed = app.blob_files();
    assert_eq!(committed.len(), 1);
    let dir = committed[0].parent().unwrap().to_path_buf();
    let old = dir.join("left-by-a-crash");
    let young = dir.join("being-committed");
    std::fs::write(&old, b"ciphertext").unwrap();
    std::fs::write(&young, b"ciphertext").unwrap();
    let two_days_ago = SystemTime::now() - Duration::from_secs(48 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    // The committed object is just as old: age alone never condemns an object.
    std::fs::File::options()
        .write(true)
        .open(&committed[0])
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();

    let grace = terrace::ops::sweep::DEFAULT_GRACE;
    let dry = terrace::ops::sweep::sweep(app.db(), &app.state.blobs, grace, true)
        .await
        .unwrap();
    assert_eq!((dry.objects, dry.orphans, dry.kept_young), (3, 2, 1));
    assert!(old.exists(), "a dry run deletes nothing");

    let report = terrace::ops::sweep::sweep(app.db(), &app.state.blobs, grace, false)
        .await
        .unwrap();
    assert_eq!(report.deleted.len(), 1);
    assert!(report.deleted[0].ends_with("left-by-a-crash"));
    assert!(!old.exists());
    assert!(young.exists());
    assert!(committed[0].exists());
    app.get_state("prod", &app.read_token)
        .await
        .assert_status(axum::http::StatusCode::OK);
    let verified = terrace::ops::verify::verify(app.db(), &app.state.blobs)
        .await
        .unwrap();
    assert!(verified.problems.is_empty());
}

on_both_databases!(the_sweep_removes_old_unreferenced_objects_only);
