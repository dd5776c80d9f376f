//! The Helm chart under `deploy/helm/terrace`: linted (strict) and rendered offline by Helm's
//! own Go code (helm-python-sdk), every manifest validated against the Kubernetes 1.33 schemas
//! (kubernetes-validate, strict: unknown fields fail), and what matters checked in the result.

use std::process::Command;

use serde_json::{Value, json};

use super::{repo_root, require_tool, run_ok, show};

/// The values a production install gives at least.
fn required_values() -> Value {
    json!({
        "database": {"url": "postgres://terrace:secret@postgres:5432/terrace"},
        "storage": {"url": "s3://terrace-state/prod"},
        "encryptionKey": "q83vEjRWeJrN7/EjRWeJq83vEjRWeJrN7/EjRWeJq80=",
        "publicUrl": "https://terrace.example.com",
    })
}

fn merged(mut base: Value, extra: Value) -> Value {
    for (key, value) in extra.as_object().expect("values are an object") {
        base[key] = value.clone();
    }
    base
}

/// Lints and renders the chart with `values`, validates the manifests, and returns them.
fn render(values: &Value, upgrade: bool) -> Vec<Value> {
    let python = require_tool_path("TERRACE_DEPLOY_PYTHON", "python3");
    let validate = require_tool_path("TERRACE_KUBERNETES_VALIDATE", "kubernetes-validate");
    let out = tempfile::tempdir().expect("temporary directory");
    let yaml = out.path().join("rendered.yaml");
    let mut command = Command::new(python);
    command
        .arg(repo_root().join("protocol-tests/deploy/render_chart.py"))
        .arg(repo_root().join("deploy/helm/terrace"))
        .arg(values.to_string())
        .arg(&yaml);
    if upgrade {
        command.arg("--upgrade");
    }
    let rendered = run_ok(&mut command);
    let manifests: Vec<Value> =
        serde_json::from_slice(&rendered.stdout).expect("the renderer prints a JSON array");
    let validated = run_ok(
        Command::new(validate)
            .args(["--kubernetes-version", "1.33.0", "--strict"])
            .arg(&yaml),
    );
    let report = String::from_utf8_lossy(&validated.stdout).to_string()
        + &String::from_utf8_lossy(&validated.stderr);
    // Every manifest of a built-in kind passed; only the Prometheus Operator's CRD has no schema.
    for manifest in &manifests {
        let kind = manifest["kind"]
            .as_str()
            .expect("every manifest has a kind");
        let name = manifest["metadata"]["name"].as_str().expect("and a name");
        if kind == "ServiceMonitor" {
            continue;
        }
        let line = format!("passed for resource {}/{name}", kind.to_lowercase());
        assert!(
            report.contains(&line),
            "{kind}/{name} not validated:\n{report}"
        );
    }
    assert!(!report.contains("ERROR"), "{report}");
    manifests
}

/// `tool` without the early return, for helpers (the test itself checked availability).
fn require_tool_path(var: &str, fallback: &str) -> std::path::PathBuf {
    super::tool(var, fallback).unwrap_or_else(|| panic!("{fallback} disappeared"))
}

fn find<'a>(manifests: &'a [Value], kind: &str, name: &str) -> &'a Value {
    manifests
        .iter()
        .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in {manifests:#?}"))
}

fn has(manifests: &[Value], kind: &str) -> bool {
    manifests.iter().any(|m| m["kind"] == kind)
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {container:#}"))
}

/// The numeric user the Dockerfile's runtime stage runs as.
fn image_user() -> i64 {
    let dockerfile =
        std::fs::read_to_string(repo_root().join("Dockerfile")).expect("read the Dockerfile");
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the Dockerfile sets a USER");
    user.split(':')
        .next()
        .expect("USER has a user part")
        .trim()
        .parse()
        .expect("a numeric USER")
}

#[test]
fn chart_defaults_render_a_probed_non_root_server_with_its_secret() {
    require_tool!("TERRACE_DEPLOY_PYTHON", "python3");
    require_tool!("TERRACE_KUBERNETES_VALIDATE", "kubernetes-validate");
    let manifests = render(&required_values(), false);

    let server = find(&manifests, "Deployment", "terrace");
    assert_eq!(server["spec"]["replicas"], 2, "{server:#}");
    let pod = &server["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], image_user(), "{pod:#}");
    let container = &pod["containers"][0];
    assert_eq!(container["args"], json!(["serve"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["startupProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        container["resources"]["requests"]["cpu"].is_string(),
        "{container:#}"
    );
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        env_value(container, "TERRACE_LISTEN")["value"],
        "0.0.0.0:8080"
    );
    assert_eq!(
        env_value(container, "TERRACE_STORAGE_URL")["value"],
        "s3://terrace-state/prod"
    );
    assert_eq!(
        env_value(container, "TERRACE_PUBLIC_URL")["value"],
        "https://terrace.example.com"
    );
    for (var, key) in [
        ("TERRACE_DATABASE_URL", "database-url"),
        ("TERRACE_ENCRYPTION_KEY", "encryption-key"),
    ] {
        let from = &env_value(container, var)["valueFrom"]["secretKeyRef"];
        assert_eq!(from["name"], "terrace", "{var}");
        assert_eq!(from["key"], key, "{var}");
    }
    let secret = find(&manifests, "Secret", "terrace");
    assert_eq!(
        secret["stringData"]["database-url"],
        "postgres://terrace:secret@postgres:5432/terrace"
    );
    // The pods roll when the Secret changes.
    assert!(
        server["spec"]["template"]["metadata"]["annotations"]["checksum/secret"].is_string(),
        "{server:#}"
    );

    let service = find(&manifests, "Service", "terrace");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        service["spec"]["selector"],
        server["spec"]["selector"]["matchLabels"]
    );
    let pdb = find(&manifests, "PodDisruptionBudget", "terrace");
    assert_eq!(pdb["spec"]["selector"], server["spec"]["selector"]);

    // The migration runs before an upgrade, as a hook, with the server's settings.
    let migrate = find(&manifests, "Job", "terrace-migrate");
    let annotations = &migrate["metadata"]["annotations"];
    assert_eq!(annotations["helm.sh/hook"], "pre-upgrade", "{migrate:#}");
    let job = &migrate["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(job["args"], json!(["migrate"]));
    assert_eq!(
        env_value(job, "TERRACE_DATABASE_URL"),
        env_value(container, "TERRACE_DATABASE_URL")
    );

    for off in ["Ingress", "HorizontalPodAutoscaler", "ServiceMonitor"] {
        assert!(!has(&manifests, off), "{off} is off by default");
    }
    assert!(
        !manifests
            .iter()
            .any(|m| m["metadata"]["name"] == "terrace-runner"),
        "runners are off by default"
    );
}

#[test]
fn chart_options_render_ingress_autoscaling_monitoring_and_runners() {
    require_tool!("TERRACE_DEPLOY_PYTHON", "python3");
    require_tool!("TERRACE_KUBERNETES_VALIDATE", "kubernetes-validate");
    let values = merged(
        required_values(),
        json!({
            "ingress": {
                "enabled": true,
                "className": "nginx",
                "hosts": [{"host": "terrace.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": [{"secretName": "terrace-tls", "hosts": ["terrace.example.com"]}],
            },
            "autoscaling": {"enabled": true, "minReplicas": 3, "maxReplicas": 9},
            "serviceMonitor": {"enabled": true, "labels": {"release": "kube-prometheus"}},
            "runners": {
                "enabled": true,
                "replicaCount": 3,
                "token": "runner-secret",
                "image": {"repository": "registry.example.com/terrace-runner", "tag": "1.0.3"},
            },
        }),
    );
    let manifests = render(&values, true);

    let server = find(&manifests, "Deployment", "terrace");
    assert!(
        server["spec"].get("replicas").is_none(),
        "the autoscaler owns the replica count: {server:#}"
    );
    let hpa = find(&manifests, "HorizontalPodAutoscaler", "terrace");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "terrace");
    assert_eq!(hpa["spec"]["minReplicas"], 3);
    assert_eq!(hpa["spec"]["maxReplicas"], 9);

    let ingress = find(&manifests, "Ingress", "terrace");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "terrace");
    assert_eq!(backend["port"]["name"], "http");
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "terrace-tls");

    let monitor = find(&manifests, "ServiceMonitor", "terrace");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        server["spec"]["selector"]["matchLabels"]
    );

    let runners = find(&manifests, "Deployment", "terrace-runner");
    assert_eq!(runners["spec"]["replicas"], 3);
    let runner = &runners["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(runner["image"], "registry.example.com/terrace-runner:1.0.3");
    let args: Vec<&str> = runner["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &args[..3],
        ["runner", "--url", "http://terrace:8080"],
        "{args:?}"
    );
    let token = &env_value(runner, "TERRACE_RUNNER_TOKEN")["valueFrom"]["secretKeyRef"];
    assert_eq!(token["name"], "terrace-runner");
    assert_eq!(token["key"], "runner-token");
    let secret = find(&manifests, "Secret", "terrace-runner");
    assert_eq!(secret["stringData"]["runner-token"], "runner-secret");
    // Runners never share the server's selector, or the Service would send them requests.
    assert_ne!(
        runners["spec"]["selector"]["matchLabels"],
        server["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn chart_uses_an_existing_secret_and_refuses_missing_settings() {
    let python = require_tool!("TERRACE_DEPLOY_PYTHON", "python3");
    require_tool!("TERRACE_KUBERNETES_VALIDATE", "kubernetes-validate");
    let values = json!({
        "existingSecret": "terrace-credentials",
        "storage": {"url": "az://state/prod"},
    });
    let manifests = render(&values, false);
    assert!(!has(&manifests, "Secret"), "{manifests:#?}");
    let server = find(&manifests, "Deployment", "terrace");
    let container = &server["spec"]["template"]["spec"]["containers"][0];
    let from = &env_value(container, "TERRACE_ENCRYPTION_KEY")["valueFrom"]["secretKeyRef"];
    assert_eq!(from["name"], "terrace-credentials");

    // Without a database URL, key or storage URL the chart does not render, nor with values
    // its schema (values.schema.json) refuses.
    let without = |key: &str| {
        let mut values = required_values();
        values.as_object_mut().unwrap().remove(key);
        values
    };
    for (values, needle) in [
        (without("database"), "database.url is required"),
        (without("encryptionKey"), "encryptionKey is required"),
        (without("storage"), "storage.url is required"),
        (
            merged(required_values(), json!({"replicaCount": "two"})),
            "at '/replicaCount': got string, want integer",
        ),
        (
            merged(
                required_values(),
                json!({"database": {"url": "mysql://db/terrace"}}),
            ),
            "at '/database/url'",
        ),
        (
            merged(required_values(), json!({"locks": "redis://locks"})),
            "at '/locks'",
        ),
    ] {
        let missing = values.to_string();
        let out = tempfile::tempdir().expect("temporary directory");
        let output = Command::new(&python)
            .arg(repo_root().join("protocol-tests/deploy/render_chart.py"))
            .arg(repo_root().join("deploy/helm/terrace"))
            .arg(values.to_string())
            .arg(out.path().join("rendered.yaml"))
            .output()
            .expect("run the renderer");
        assert!(!output.status.success(), "rendered with {missing}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(needle),
            "{}",
            show(&output)
        );
    }
}
