//! The `data-service` binary as an operator runs it: configuration errors,
//! the address it prints, health, and SIGTERM.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const BIN: &str = env!("CARGO_BIN_EXE_data-service");

#[test]
fn a_bad_setting_fails_at_start_with_one_line_naming_it() {
    for (var, value, named) in [
        ("STRATA_LISTEN", "nowhere", "STRATA_LISTEN"),
        ("STRATA_CONTEXTS", "catalog,billing", "STRATA_CONTEXTS"),
        (
            "STRATA_CATALOG_DATABASE_URL",
            "mysql://db/shop",
            "STRATA_CATALOG_DATABASE_URL",
        ),
    ] {
        let output = Command::new(BIN).env(var, value).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(named), "{stderr}");
    }
}

#[tokio::test]
async fn serves_prints_its_address_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("strata-process-{}", std::process::id()));
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .strip_prefix("data-service listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    assert!(
        dir.join("catalog.db").exists(),
        "the catalog's SQLite file is in the data dir"
    );

    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: "strata.catalog.v1.ProductService".into(),
        })
        .await
        .unwrap();
    assert_eq!(status.into_inner().status(), ServingStatus::Serving);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 15 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "a clean shutdown exits 0: {status:?}");
    let _ = std::fs::remove_dir_all(dir);
}
