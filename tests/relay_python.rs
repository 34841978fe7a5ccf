//! The relay's own test suite (Python unittest, `tests/relay`), run as part of `cargo test`:
//! the relay is Python because it must run unmodified on the collector.

mod common;
use common::*;
use std::process::Command;

#[test]
fn relay_python_suite_passes() {
    if !system_ready(&["python3"], false) {
        return;
    }
    let o = run(Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "tests/relay", "-v"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(repo()));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let ran = err
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split(' ')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    assert!(ran >= 20, "the relay suite ran {ran} tests: {err}");
}

#[test]
fn relay_fits_in_user_data_and_is_what_relay_source_prints() {
    let o = run(Command::new(bin()).arg("relay-source"));
    assert!(o.status.success());
    assert_eq!(o.stdout, awsvpc::relay::SOURCE.as_bytes());
    assert_eq!(
        o.stdout,
        std::fs::read(repo().join("src/relay/relay.py")).unwrap()
    );
    assert!(o.stdout.len() < 16 * 1024, "EC2 user data holds 16 KB");
}
