//! `terrace verify` finds missing, corrupted and mismatched blobs, and passes a clean store.

use crate::support::{TestApp, state};

async fn verify_passes_a_clean_store_and_names_every_damaged_blob(app: TestApp) {
    for (ws, serial) in [("prod", 1), ("prod", 2), ("dev", 1)] {
        app.write_state(ws, state("l", serial), None, &app.write_token)
            .await
            .assert_status(axum::http::StatusCode::OK);
    }
    let clean = terrace::ops::verify::verify(app.db(), &app.state.blobs)
        .await
        .unwrap();
    assert_eq!(clean.checked, 3);
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);

    let files = app.blob_files();
    assert_eq!(files.len(), 3);
    std::fs::remove_file(&files[0]).unwrap();
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&files[1], bytes).unwrap();

    let damaged = terrace::ops::verify::verify(app.db(), &app.state.blobs)
        .await
        .unwrap();
    assert_eq!(damaged.checked, 3);
    let mut problems: Vec<String> = damaged.problems.iter().map(|p| p.problem.clone()).collect();
    problems.sort();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("object does not decrypt"),
        "{problems:?}"
    );
    assert!(problems[1].starts_with("object missing"), "{problems:?}");
    for problem in &damaged.problems {
        assert!(problem.used_by.starts_with("state acme/"), "{problem:?}");
    }
}

on_both_databases!(verify_passes_a_clean_store_and_names_every_damaged_blob);
