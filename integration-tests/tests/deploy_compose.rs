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

#[test]
fn compose_file_is_valid_and_complete() {
    let output = Command::new("docker-compose")
        .args(["-f", "deploy/compose.yml", "config"])
        .current_dir(repo_root())
        .output()
        .expect("docker-compose runs (Debian package docker-compose)");
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
    has("ingest", "DATACAT_NATS_URL: nats://nats:4222");
    has("query", "published: 8080");
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
