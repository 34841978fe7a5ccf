//! The packages under `packaging/`, each built by its script and checked by what installs
//! it: the .deb's extcap is found by real tshark in the package's global extcap folder;
//! the Windows zip's `awsvpc.exe install` (under Wine) puts it into Wireshark's personal
//! folder; the Homebrew formula names this tree's version and the checksum of its tarball.

mod common;
use common::*;
use std::process::Command;

fn script(rel: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(repo().join(rel));
    c
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[test]
fn the_deb_puts_awsvpc_where_wireshark_finds_it() {
    if !system_ready(&["dpkg-deb", "tshark", "runuser"], true) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // The test build without its debug information (700 MB of it), as a release is.
    let stripped = tmp.path().join("awsvpc");
    assert!(
        run(Command::new("strip").arg("-o").arg(&stripped).arg(bin()))
            .status
            .success()
    );
    let o = run(script("packaging/deb/build.sh")
        .arg(&stripped)
        .arg(tmp.path()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let deb = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        deb.ends_with(&format!("awsvpc_{}_amd64.deb", version())) || deb.contains(version()),
        "{deb}"
    );
    let info =
        run(Command::new("dpkg-deb").args(["--field", &deb, "Package", "Version", "Depends"]));
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("Package: awsvpc") && info.contains(version()) && info.contains("libpcap0.8"),
        "{info}"
    );
    let root = tmp.path().join("root");
    assert!(run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))
        .status
        .success());
    let multiarch = String::from_utf8_lossy(
        &run(Command::new("dpkg-architecture").arg("-qDEB_HOST_MULTIARCH")).stdout,
    )
    .trim()
    .to_string();
    let extcap = root.join(format!("usr/lib/{multiarch}/wireshark/extcap"));
    let installed = extcap.join("awsvpc");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&stripped).unwrap()
    );
    assert!(root.join("usr/share/doc/awsvpc/iam-policy.json").is_file());
    // tshark takes WIRESHARK_EXTCAP_DIR in place of the global folder, but not as root.
    for p in [tmp.path(), root.as_path()] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let d = run(Command::new("runuser")
        .args(["-u", "nobody", "--", "env"])
        .arg(format!("HOME={}", home.path().display()))
        .arg(format!("WIRESHARK_EXTCAP_DIR={}", extcap.display()))
        .args(["tshark", "-D"]));
    let listed = String::from_utf8_lossy(&d.stdout);
    assert!(
        listed.contains("awsvpc (AWS VPC Traffic Mirroring)"),
        "tshark -D: {listed} {}",
        String::from_utf8_lossy(&d.stderr)
    );
}

#[test]
fn the_homebrew_formula_is_this_tree_with_its_checksum() {
    if !system_ready(&["git", "sha256sum"], false) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let o = run(script("packaging/homebrew/make-formula.sh")
        .arg("")
        .arg(tmp.path()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let formula = std::fs::read_to_string(tmp.path().join("awsvpc.rb")).unwrap();
    let tarball = tmp.path().join(format!("awsvpc-{}.tar.gz", version()));
    let sum = run(Command::new("sha256sum").arg(&tarball));
    let sum = String::from_utf8_lossy(&sum.stdout);
    let sum = sum.split_whitespace().next().unwrap();
    assert!(formula.contains(&format!("sha256 \"{sum}\"")), "{formula}");
    assert!(formula.contains(&format!("version \"{}\"", version())));
    assert!(formula.contains(&format!("url \"file://{}\"", tarball.display())));
    assert!(
        !formula.contains('@'),
        "every placeholder filled: {formula}"
    );
    // The tarball is the source tree Homebrew builds: its manifest and Cargo.lock are there.
    let list = run(Command::new("tar").arg("tzf").arg(&tarball));
    let list = String::from_utf8_lossy(&list.stdout);
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        "extcap-manifest/awsvpc.json",
        "src/main.rs",
    ] {
        assert!(
            list.contains(&format!("awsvpc-{}/{f}", version())),
            "{f} in the tarball"
        );
    }
}

#[test]
fn the_windows_zip_installs_with_one_line_under_wine() {
    let Some(dir) = std::env::var_os("AWSVPC_WINDOWS_DIR").map(std::path::PathBuf::from) else {
        assert!(
            !must_run_system_tests(),
            "AWSVPC_WINDOWS_DIR must be set (bash scripts/cross.sh)"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let exe = dir.join("awsvpc.exe");
    let o = run(script("packaging/windows/build-zip.sh")
        .arg(&exe)
        .arg(tmp.path()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let zip = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let unzipped = tmp.path().join("unzipped");
    assert!(run(Command::new("python3")
        .args(["-m", "zipfile", "-e", &zip])
        .arg(&unzipped))
    .status
    .success());
    let folder = unzipped.join(format!("awsvpc-{}-windows-x86_64", version()));
    for f in ["awsvpc.exe", "INSTALL.txt", "README.md", "iam-policy.json"] {
        assert!(folder.join(f).is_file(), "{f} in the zip");
    }
    // Wine 8 lacks a DLL every Windows 10 has (scripts/cross.sh); the stand-in goes beside.
    std::fs::copy(
        dir.join("bcryptprimitives.dll"),
        folder.join("bcryptprimitives.dll"),
    )
    .unwrap();
    let install = std::fs::read_to_string(folder.join("INSTALL.txt")).unwrap();
    assert!(install.contains("awsvpc.exe install\r\n"), "{install}");
    // `awsvpc.exe install` as a Windows user would run it, in a fresh Wine prefix.
    let prefix = tmp.path().join("wine");
    // A user whose profile folder has a space and non-ASCII letters (Wine names the
    // profile after the Unix user).
    let appdata = r"C:\users\Jürgen Müller\AppData\Roaming";
    let wine = |args: &[&str]| {
        run(common::wine(&prefix)
            .env("USER", "Jürgen Müller")
            .env("LOGNAME", "Jürgen Müller")
            .args(args))
    };
    let exe_z = z(&folder.join("awsvpc.exe"));
    let i = wine(&[&exe_z, "install"]);
    let said = String::from_utf8_lossy(&i.stdout);
    assert!(
        i.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&i.stderr)
    );
    assert!(
        said.contains(&format!(r"{appdata}\Wireshark\extcap\awsvpc.exe")),
        "{said}"
    );
    let installed =
        prefix.join("drive_c/users/Jürgen Müller/AppData/Roaming/Wireshark/extcap/awsvpc.exe");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(folder.join("awsvpc.exe")).unwrap()
    );
    let u = wine(&[&exe_z, "uninstall"]);
    assert!(u.status.success(), "{}", String::from_utf8_lossy(&u.stdout));
    assert!(!installed.exists());
}
