//! The public registry's browse endpoints: lists, search, details, latest.

use axum::http::StatusCode;
use serde_json::json;

use super::{get, make_public, module_archive, publish, publish_as};
use crate::support::{ORG, OTHER_ORG, TestApp};

on_both_databases! {
    browse_endpoints_list_search_and_describe_what_the_caller_may_see,
}

async fn browse_endpoints_list_search_and_describe_what_the_caller_may_see(app: TestApp) {
    for (module, version) in [
        ("vpc/aws", "1.0.0"),
        ("vpc/aws", "1.1.0"),
        ("vpc/aws", "2.0.0-rc.1"),
        ("vpc/gcp", "0.1.0"),
        ("dns/aws", "3.0.0"),
    ] {
        publish(&app, module, version)
            .await
            .assert_status(StatusCode::CREATED);
    }
    let other_module = publish_as(
        &app,
        &format!("{OTHER_ORG}/db/aws/1.0.0"),
        module_archive("1.0.0"),
        Some(&app.other_token),
    )
    .await;
    other_module.assert_status(StatusCode::CREATED);

    let all = get(&app, "/v1/modules", Some(&app.read_token)).await.json();
    let ids: Vec<&str> = all["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "acme/vpc/aws/1.1.0",
            "acme/vpc/gcp/0.1.0",
            "acme/dns/aws/3.0.0"
        ]
    );
    assert_eq!(
        all["modules"][0]["published_at"].as_str().unwrap().len(),
        20
    );
    assert_eq!(all["meta"], json!({"limit": 100, "current_offset": 0}));

    let page = get(
        &app,
        "/v1/modules?limit=1&offset=1&provider=aws",
        Some(&app.read_token),
    )
    .await
    .json();
    assert_eq!(page["modules"][0]["id"], "acme/dns/aws/3.0.0");
    assert_eq!(page["meta"]["prev_offset"], 0);
    assert!(page["meta"].get("next_offset").is_none());
    let first = get(&app, "/v1/modules?limit=2", Some(&app.read_token))
        .await
        .json();
    assert_eq!(first["meta"]["next_offset"], 2);
    assert_eq!(first["meta"]["next_url"], "/v1/modules?limit=2&offset=2");

    let found = get(&app, "/v1/modules/search?q=DNS", Some(&app.read_token))
        .await
        .json();
    assert_eq!(found["modules"].as_array().unwrap().len(), 1);
    let by_readme = get(
        &app,
        "/v1/modules/search?q=everything%20acme&provider=gcp",
        Some(&app.read_token),
    )
    .await
    .json();
    assert_eq!(by_readme["modules"][0]["id"], "acme/vpc/gcp/0.1.0");
    let literal = get(&app, "/v1/modules/search?q=%25", Some(&app.read_token))
        .await
        .json();
    assert!(literal["modules"].as_array().unwrap().is_empty());
    get(&app, "/v1/modules/search", Some(&app.read_token))
        .await
        .assert_status(StatusCode::BAD_REQUEST);

    let systems = get(
        &app,
        &format!("/v1/modules/{ORG}/vpc"),
        Some(&app.read_token),
    )
    .await
    .json();
    let ids: Vec<&str> = systems["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme/vpc/aws/1.1.0", "acme/vpc/gcp/0.1.0"]);

    let latest = get(
        &app,
        &format!("/v1/modules/{ORG}/vpc/aws"),
        Some(&app.read_token),
    )
    .await
    .json();
    assert_eq!(latest["version"], "1.1.0");
    assert_eq!(latest["versions"], json!(["1.0.0", "1.1.0", "2.0.0-rc.1"]));
    assert_eq!(latest["providers"], json!(["aws", "gcp"]));
    assert_eq!(
        latest["root"]["readme"],
        "# VPC\n\nA network for everything acme runs.\n"
    );
    assert_eq!(latest["root"]["outputs"][1]["name"], "version");
    assert_eq!(latest["submodules"][0]["path"], "modules/subnets");
    let exact = get(
        &app,
        &format!("/v1/modules/{ORG}/vpc/aws/2.0.0-rc.1"),
        Some(&app.read_token),
    )
    .await
    .json();
    assert_eq!(exact["id"], "acme/vpc/aws/2.0.0-rc.1");

    let redirect = get(
        &app,
        &format!("/v1/modules/{ORG}/vpc/aws/download"),
        Some(&app.read_token),
    )
    .await;
    redirect.assert_status(StatusCode::FOUND);
    assert_eq!(
        redirect.headers["location"],
        "/v1/modules/acme/vpc/aws/1.1.0/download"
    );

    // Another org sees its own modules, then acme's too once acme is public.
    let theirs = get(&app, "/v1/modules", Some(&app.other_token))
        .await
        .json();
    assert_eq!(theirs["modules"].as_array().unwrap().len(), 1);
    assert_eq!(
        get(&app, "/v1/modules", None).await.json()["modules"],
        json!([])
    );
    make_public(&app).await;
    let anonymous = get(&app, "/v1/modules/", None).await.json();
    assert_eq!(anonymous["modules"].as_array().unwrap().len(), 3);
    let theirs = get(&app, "/v1/modules", Some(&app.other_token))
        .await
        .json();
    assert_eq!(theirs["modules"].as_array().unwrap().len(), 4);
}
