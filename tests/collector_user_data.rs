//! The user data of a collector awsvpc launches, read back by cloud-init's own schema
//! validator (`tests/cloud_init/user_data.py`, with cloud-init unpacked by
//! scripts/install-deps.sh): it must be a valid strict `#cloud-config` under EC2's 16 KB,
//! install exactly the capture's host key and client key, write the watchdog (and, for
//! SSM, the relay) byte for byte as shipped, and start them.
#![cfg(feature = "aws")]

mod common;
use awsvpc::relay::user_data::{cloud_config, CollectorSetup, SshSetup, SsmSetup, Watchdog};
use awsvpc::relay::{RelayOptions, SOURCE};
use awsvpc::transport::pinned::CollectorKeys;
use common::*;
use std::process::Command;

const CHECKER: &str = "tests/cloud_init/user_data.py";

fn cloud_init_ready() -> bool {
    let ok = std::path::Path::new(
        "/var/cache/awsvpc-test/cloud-init/usr/lib/python3/dist-packages/cloudinit",
    )
    .exists();
    if !ok {
        assert!(
            !must_run_system_tests(),
            "cloud-init is not unpacked; run scripts/install-deps.sh"
        );
        eprintln!("skipping: cloud-init not unpacked (scripts/install-deps.sh)");
    }
    ok
}

/// What cloud-init would apply, as the checker prints it.
fn read_back(user_data: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("user-data");
    std::fs::write(&f, user_data).unwrap();
    let o = run(Command::new("/usr/bin/python3")
        .arg(repo().join(CHECKER))
        .arg(&f));
    assert!(
        o.status.success(),
        "cloud-init rejects the user data: {}\n{user_data}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn relay() -> RelayOptions {
    RelayOptions {
        listen_addr: [0, 0, 0, 0].into(),
        listen_port: 4789,
        snaplen: Some(128),
        bind_wait_s: 0,
        on_host: None,
    }
}

#[test]
fn ssh_collector_user_data_installs_the_captures_keys_and_the_watchdog() {
    if !cloud_init_ready() {
        return;
    }
    let keys = CollectorKeys::generate().unwrap();
    let setup = CollectorSetup {
        listen_port: 4789,
        ssh: Some(SshSetup {
            host_private: keys.host_private_openssh().to_string(),
            host_public: keys.host_public_line(),
            client_public: keys.client_public_line("awsvpc"),
        }),
        ssm: None,
        watchdog: Watchdog::default(),
    };
    let ud = cloud_config(&setup).unwrap();
    let v = read_back(&ud);
    assert!(v["size"].as_u64().unwrap() <= 16 * 1024);
    assert_eq!(
        v["host_private"].as_str().unwrap().trim(),
        keys.host_private_openssh().trim()
    );
    assert_eq!(
        v["host_public"].as_str().unwrap(),
        keys.host_public_line().trim()
    );
    assert_eq!(
        v["users"]["awsvpc"],
        serde_json::json!([keys.client_public_line("awsvpc").trim()])
    );
    let files = v["files"].as_object().unwrap();
    let watchdog = &files["/usr/local/lib/awsvpc/watchdog.sh"];
    assert_eq!(
        watchdog["content"].as_str().unwrap(),
        std::fs::read_to_string(repo().join("src/relay/watchdog.sh")).unwrap()
    );
    assert_eq!(watchdog["mode"], "0755");
    assert!(
        !files.contains_key("/usr/local/lib/awsvpc/relay.py"),
        "over SSH the relay is sent at connect time"
    );
    assert_eq!(
        files["/etc/ssh/sshd_config.d/50-awsvpc.conf"]["content"],
        "ClientAliveInterval 10\nClientAliveCountMax 3\n",
        "sshd drops a vanished client, so the relay and then the instance end"
    );
    let runcmd = v["runcmd"].to_string();
    assert!(runcmd.contains("--setenv=AWSVPC_PORT=4789"), "{runcmd}");
    assert!(runcmd.contains("--setenv=AWSVPC_IDLE=300"), "{runcmd}");
    assert!(!runcmd.contains("listener"), "{runcmd}");
}

#[test]
fn ssm_collector_user_data_installs_the_relay_as_shipped_and_its_listener() {
    if !cloud_init_ready() {
        return;
    }
    let setup = CollectorSetup {
        listen_port: 4789,
        ssh: None,
        ssm: Some(SsmSetup {
            relay: relay(),
            tcp_port: 4790,
        }),
        watchdog: Watchdog {
            grace_s: 600,
            idle_s: 120,
        },
    };
    let ud = cloud_config(&setup).unwrap();
    let v = read_back(&ud);
    assert!(v["size"].as_u64().unwrap() <= 16 * 1024);
    assert!(v["host_private"].is_null(), "no SSH host key over SSM");
    let files = v["files"].as_object().unwrap();
    assert_eq!(
        files["/usr/local/lib/awsvpc/relay.py"]["content"]
            .as_str()
            .unwrap(),
        SOURCE,
        "the relay, decoded as cloud-init decodes it, is the one awsvpc ships"
    );
    let listener = files["/usr/local/lib/awsvpc/listener.py"]["content"]
        .as_str()
        .unwrap();
    assert!(listener.contains("open(\"/usr/local/lib/awsvpc/relay.py\")"));
    assert!(listener.contains("l.bind((\"127.0.0.1\",4790))"));
    // The listener is valid Python.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("listener.py");
    std::fs::write(&f, listener).unwrap();
    let o = run(Command::new("/usr/bin/python3")
        .args(["-m", "py_compile"])
        .arg(&f));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let runcmd = v["runcmd"].to_string();
    assert!(runcmd.contains("--setenv=AWSVPC_GRACE=600"), "{runcmd}");
    assert!(runcmd.contains("--uid=awsvpc"), "{runcmd}");
    assert!(
        runcmd.contains("/usr/local/lib/awsvpc/listener.py"),
        "{runcmd}"
    );
}
