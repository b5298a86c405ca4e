//! deploy/compose.yml cannot run here (no Docker engine), so it is validated the way Compose
//! itself reads it: `docker-compose config` (Debian's docker-compose) must accept it, and the
//! normalised result must have what a deployment needs.

use std::collections::BTreeMap;
use std::process::Command;

use datacat_integration_tests::binaries::repo_root;

/// The normalised file's `services:` section, split per service (Compose sorts the keys and
/// indents a service's own keys by four spaces).
fn services(config: &str) -> BTreeMap<String, String> {
    let mut sections = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_services = false;
    for line in config.lines() {
        if !line.starts_with(' ') {
            in_services = line == "services:";
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') {
                current = Some(name.to_string());
                continue;
            }
        }
        if let Some(name) = &current {
            let section: &mut String = sections.entry(name.clone()).or_default();
            section.push_str(line.trim());
            section.push('\n');
        }
    }
    sections
}

/// What `deploy/secrets.sh` writes and compose requires.
const SECRETS: [&str; 6] = [
    "DATACAT_READ_TOKEN",
    "DATACAT_WRITE_TOKEN",
    "DATACAT_CLICKHOUSE_PASSWORD",
    "DATACAT_NATS_INGEST_PASSWORD",
    "DATACAT_NATS_QUERY_PASSWORD",
    "DATACAT_NATS_DAEMON_PASSWORD",
];

/// The variables that name compose's images (deploy/images.sh --env).
const IMAGE_VARIABLES: [&str; 4] = [
    "DATACAT_NATS_IMAGE",
    "DATACAT_CLICKHOUSE_IMAGE",
    "DATACAT_INGEST_IMAGE",
    "DATACAT_QUERY_IMAGE",
];

/// `docker-compose config` with the secrets `deploy/secrets.sh` writes, or without them.
fn compose_config(with_secrets: bool) -> std::process::Output {
    let mut command = Command::new("docker-compose");
    command
        .args(["-f", "deploy/compose.yml", "config"])
        .current_dir(repo_root());
    for name in SECRETS {
        // (A deploy/.env of this checkout would count as given: compose reads it first;
        // the environment wins over it, and an empty value counts as missing.)
        command.env(name, if with_secrets { "test-secret" } else { "" });
    }
    // The file's own defaults (test-all exports the local images' names for the tests).
    for name in IMAGE_VARIABLES {
        command.env_remove(name);
    }
    command
        .output()
        .expect("docker-compose runs (Debian package docker-compose)")
}

/// Without the tokens and the ClickHouse password, compose refuses to start, and says how
/// to make them.
#[test]
fn compose_refuses_to_start_without_its_secrets() {
    let output = compose_config(false);
    assert!(!output.status.success(), "compose took no secrets");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("deploy/secrets.sh"), "{said}");
}

#[test]
fn compose_file_is_valid_and_complete() {
    let output = compose_config(true);
    let config = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "docker-compose rejects deploy/compose.yml: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let services = services(&config);
    assert_eq!(
        services.keys().map(String::as_str).collect::<Vec<_>>(),
        ["clickhouse", "ingest", "migrate", "nats", "query"]
    );
    let has = |service: &str, text: &str| {
        assert!(
            services[service].contains(text),
            "{service} lacks {text:?}:\n{}",
            services[service]
        )
    };
    has("nats", "--jetstream");
    has("nats", "nats-data:/data");
    has("clickhouse", "image: clickhouse/clickhouse-server:");
    has("clickhouse", "clickhouse-data:/var/lib/clickhouse");
    has("migrate", "- migrate");
    has("migrate", "target: ingest");
    has("ingest", "replicas: 3");
    has("ingest", "condition: service_completed_successfully");
    // Each program as its own NATS user; the server with the users' permissions.
    has(
        "ingest",
        "DATACAT_NATS_URL: nats://datacat-ingest:test-secret@nats:4222",
    );
    has(
        "query",
        "DATACAT_NATS_URL: nats://datacat-query:test-secret@nats:4222",
    );
    has("nats", "/etc/nats/auth.conf");
    has("nats", "DATACAT_NATS_DAEMON_PASSWORD: test-secret");
    has("query", "published: 8080");
    has("query", "DATACAT_READ_TOKEN: test-secret");
    has("query", "DATACAT_WRITE_TOKEN: test-secret");
    assert!(
        !services["clickhouse"].contains("ports:"),
        "ClickHouse is not published on the host:\n{}",
        services["clickhouse"]
    );
    has("query", "target: query");
    for service in ["nats", "clickhouse", "ingest", "query"] {
        has(service, "healthcheck:");
    }
    assert!(
        config.contains("volumes:\n  clickhouse-data: {}\n  nats-data: {}"),
        "{config}"
    );
    let dockerfile = std::fs::read_to_string(repo_root().join("deploy/docker/Dockerfile")).unwrap();
    for stage in [
        "AS builder",
        "AS runtime",
        "AS ingest",
        "AS query",
        "AS daemon",
    ] {
        assert!(
            dockerfile.contains(stage),
            "the Dockerfile lacks the stage {stage}"
        );
    }
    assert!(
        dockerfile.contains("debian:bookworm-slim"),
        "small runtime images"
    );
}

/// `deploy/secrets.sh` makes the secrets compose needs: private, random, kept once made.
#[test]
fn the_secrets_step_makes_private_random_secrets_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    let run = || {
        let status = Command::new("bash")
            .arg(repo_root().join("deploy/secrets.sh"))
            .arg(&env)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read_to_string(&env).unwrap()
    };
    let first = run();
    let mode = std::fs::metadata(&env).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let values: Vec<&str> = first
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(_, v)| v)
        .collect();
    let names: Vec<&str> = first
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    let mut made = SECRETS.to_vec();
    made.push("DATACAT_SESSION_SECRET");
    assert_eq!(names, made, "{first}");
    for value in &values {
        assert!(
            value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()),
            "{value}"
        );
    }
    assert_ne!(values[0], values[1]);
    assert_eq!(run(), first, "an existing file is kept");
    let output = Command::new("docker-compose")
        .arg("--env-file")
        .arg(&env)
        .args(["-f", "deploy/compose.yml", "config"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
