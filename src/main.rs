use awsvpc::{extcap, files, install, offline, sources};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// Live packets from AWS VPC Traffic Mirroring in Wireshark.
///
/// Wireshark runs awsvpc as an extcap (with --extcap-interfaces, --extcap-config,
/// --capture …); people run the subcommands below.
#[derive(Parser)]
#[command(name = "awsvpc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install awsvpc into the personal extcap folder of the Wireshark on this machine.
    Install {
        /// Install into this folder instead.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Link to this binary instead of copying it.
        #[arg(long)]
        symlink: bool,
    },
    /// Remove awsvpc from the personal extcap folders.
    Uninstall {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    #[cfg(feature = "aws")]
    /// Find and remove AWS resources awsvpc created (tagged awsvpc:managed=true), in
    /// dependency order. Untagged resources are never touched.
    Cleanup {
        #[arg(long)]
        profile: Option<OsString>,
        #[arg(long)]
        region: Option<OsString>,
        /// Only this capture's resources.
        #[arg(long)]
        run_id: Option<OsString>,
        /// Only captures started longer ago than this (e.g. 30m, 2h, 7d).
        #[arg(long)]
        older_than: Option<OsString>,
        /// Also resources other people's captures created (default: only yours).
        #[arg(long)]
        all_users: bool,
        /// List what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The guardian of a capture (started by awsvpc itself): removes the run if the
    /// capture dies before its own teardown.
    #[cfg(feature = "aws")]
    #[command(hide = true)]
    Guard {
        #[arg(long)]
        ledger: PathBuf,
        #[arg(long)]
        log_file: Option<String>,
    },
    /// Print the relay that runs on remote collectors (python3, stdlib only), exactly as
    /// awsvpc sends it, so it can be reviewed.
    RelaySource {
        /// Print instead the user data of a collector awsvpc launches (`--collector
        /// ephemeral`), with keys generated for this example only.
        #[cfg(feature = "aws")]
        #[arg(long)]
        user_data: bool,
        /// With --user-data: the collector for --connect ssm.
        #[cfg(feature = "aws")]
        #[arg(long, requires = "user_data")]
        ssm: bool,
    },
    /// Decapsulate a capture taken on a mirror target into pcapng, one interface per source.
    #[command(
        after_help = "Exit status: 0 when the whole capture was decapsulated; 1 when nothing was written (the reason on stderr); 2 when the capture is cut short or damaged part-way: the packets before the damage were decapsulated and written, and stderr says after which packet."
    )]
    Decap {
        /// pcap or pcapng from the mirror target (e.g. tcpdump -w m.pcap udp port 4789).
        input: PathBuf,
        /// Output pcapng file ("-" for stdout). A file is replaced only when the decap
        /// succeeds and keeps its mode; a fifo or character device is written as it is.
        #[arg(short = 'w', long = "write")]
        output: PathBuf,
        /// A mirror source: VNI=ENI[,MAC] (repeatable). The MAC gives direction flags.
        #[arg(long = "source", value_name = "VNI=ENI[,MAC]")]
        sources: Vec<OsString>,
        /// Keep only inner frames matching this libpcap filter.
        #[arg(long)]
        filter: Option<OsString>,
        /// UDP port of the VXLAN (repeatable; default 4789).
        #[arg(long = "port")]
        ports: Vec<u16>,
        /// Bytes kept of each inner frame.
        #[arg(long)]
        snaplen: Option<u32>,
    },
}

fn main() -> ExitCode {
    awsvpc::log::report_panics();
    let code = run();
    // A helper the AWS SDK started (a hung credential_process) must not outlive awsvpc.
    awsvpc::sys::end_children(std::time::Duration::from_millis(300));
    code
}

fn run() -> ExitCode {
    // args_os: std::env::args panics on an argument that is not UTF-8.
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    // Option names are ASCII, so a lossy copy tells an extcap call; run_os checks values.
    let names: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Wireshark's development branch (toward 5.0) after a forced kill: this flag alone, no
    // interface, no options (`extcap_cleanup_postkill` in extcap.c). A build without AWS
    // support creates nothing, so has nothing to clean.
    if names.iter().any(|a| a == "--extcap-cleanup-postkill") {
        return awsvpc::plan::postkill();
    }
    if extcap::args::is_extcap_call(&names) {
        return extcap::run_os(&argv, &mut std::io::stdout().lock());
    }
    let cli = Cli::parse_from(std::env::args_os());
    let result: Result<String, String> = match cli.command {
        Cmd::Install { dir, symlink } => install::install(dir.as_deref(), symlink),
        Cmd::Uninstall { dir } => install::uninstall(dir.as_deref()),
        #[cfg(feature = "aws")]
        Cmd::RelaySource {
            user_data: true,
            ssm,
        } => example_user_data(ssm),
        Cmd::RelaySource { .. } => {
            // Exactly the embedded bytes: no added newline.
            use std::io::Write;
            let mut out = std::io::stdout();
            let ok = out.write_all(awsvpc::relay::SOURCE.as_bytes()).is_ok() && out.flush().is_ok();
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Cmd::Decap {
            input,
            output,
            sources: srcs,
            filter,
            ports,
            snaplen,
        } => return decap_main(&input, &output, srcs, filter, ports, snaplen),
        #[cfg(feature = "aws")]
        Cmd::Guard { ledger, log_file } => {
            return awsvpc::aws::guardian::guard(&ledger, log_file.as_deref())
        }
        #[cfg(feature = "aws")]
        Cmd::Cleanup {
            profile,
            region,
            run_id,
            older_than,
            all_users,
            dry_run,
        } => (|| {
            let older_than = utf8_opt("--older-than", older_than)?
                .map(|a| parse_age(&a))
                .transpose()?;
            cleanup_command(
                utf8_opt("--profile", profile)?,
                utf8_opt("--region", region)?,
                utf8_opt("--run-id", run_id)?,
                older_than,
                all_users,
                dry_run,
            )
        })(),
    };
    match result {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("awsvpc: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The user data a launched collector gets, with keys made for this example.
#[cfg(feature = "aws")]
fn example_user_data(ssm: bool) -> Result<String, String> {
    use awsvpc::relay::user_data::{cloud_config, CollectorSetup, SshSetup, SsmSetup, Watchdog};
    let ssh = if ssm {
        None
    } else {
        let k = awsvpc::transport::pinned::CollectorKeys::generate()?;
        Some(SshSetup {
            host_private: k.host_private_openssh().to_string(),
            host_public: k.host_public_line(),
            client_public: k.client_public_line("awsvpc"),
        })
    };
    let relay = awsvpc::relay::RelayOptions {
        listen_addr: [0, 0, 0, 0].into(),
        listen_port: 4789,
        snaplen: Some(awsvpc::transport::ssm::DEFAULT_SNAPLEN),
        bind_wait_s: 0,
        on_host: None,
    };
    let setup = CollectorSetup {
        listen_port: 4789,
        ssh,
        ssm: ssm.then_some(SsmSetup {
            relay,
            tcp_port: awsvpc::plan::launched::SSM_RELAY_PORT,
        }),
        watchdog: Watchdog::default(),
    };
    cloud_config(&setup).map(|t| t.trim_end().to_string())
}

#[cfg(feature = "aws")]
fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let bad = || format!("--older-than {s:?} is not an age such as 30m, 2h or 7d.");
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" | "" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs)
        .map(std::time::Duration::from_secs)
        .ok_or_else(bad)
}

#[cfg(feature = "aws")]
fn cleanup_command(
    profile: Option<String>,
    region: Option<String>,
    run_id: Option<String>,
    older_than: Option<std::time::Duration>,
    all_users: bool,
    dry_run: bool,
) -> Result<String, String> {
    use awsvpc::aws::{cleanup, client, ledger};
    let rt = client::runtime()?;
    rt.block_on(async {
        let aws = client::connect(profile.as_deref(), region.as_deref()).await?;
        let me = aws.caller_arn().await?;
        let sel = cleanup::Selection {
            run_id: run_id.clone(),
            older_than,
            expired_only: false,
            created_by: (!all_users).then(|| me.clone()),
        };
        // Cleanup is not bound by Wireshark's kill window: give in-use waits more time.
        let r = cleanup::remove(
            &aws,
            &sel,
            dry_run,
            std::time::Duration::from_secs(300),
            &ledger::state_dir(),
        )
        .await?;
        let listing: Vec<String> = r
            .found
            .iter()
            .map(|f| format!("  {:?} {} (run {})", f.kind, f.id, f.run_id))
            .collect();
        let Some(report) = r.report else {
            return Ok(if r.found.is_empty() {
                format!(
                    "Nothing to remove in {}: no awsvpc resources match.",
                    aws.region
                )
            } else {
                format!(
                    "Would remove {} resources in {}:\n{}",
                    r.found.len(),
                    aws.region,
                    listing.join("\n")
                )
            });
        };
        match report.sentence(run_id.as_deref().unwrap_or("<id>")) {
            Some(s) => Err(format!("Removed {} resources. {s}", report.removed.len())),
            None => Ok(format!(
                "Removed {} resources in {}:\n{}",
                report.removed.len(),
                aws.region,
                listing.join("\n")
            )),
        }
    })
}

/// A text argument as a String, or the sentence saying it is not UTF-8.
fn utf8(name: &str, v: OsString) -> Result<String, String> {
    v.into_string().map_err(|v| {
        format!(
            "The value of {name} is not valid UTF-8 (read as {:?}); give it as UTF-8 text.",
            v.to_string_lossy()
        )
    })
}

fn utf8_opt(name: &str, v: Option<OsString>) -> Result<Option<String>, String> {
    v.map(|v| utf8(name, v)).transpose()
}

/// Exit status of a decap that wrote the packets before damage in its input (documented in
/// `awsvpc decap --help` and the README).
const PARTIAL_OUTPUT: u8 = 2;

/// `awsvpc decap`: the summary on stdout (stderr with `-w -`), a refusal or a warning on
/// stderr.
fn decap_main(
    input: &std::path::Path,
    output: &std::path::Path,
    srcs: Vec<OsString>,
    filter: Option<OsString>,
    ports: Vec<u16>,
    snaplen: Option<u32>,
) -> ExitCode {
    match decap_command(input, output, srcs, filter, ports, snaplen) {
        Ok((summary, warning)) => {
            // With "-w -" stdout is the capture; the summary goes where it cannot corrupt it.
            if output.as_os_str() == "-" {
                eprintln!("{summary}");
            } else {
                println!("{summary}");
            }
            match warning {
                Some(w) => {
                    eprintln!("awsvpc: {w}");
                    ExitCode::from(PARTIAL_OUTPUT)
                }
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("awsvpc: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The summary, and the warning when the input was damaged part-way.
fn decap_command(
    input: &std::path::Path,
    output: &std::path::Path,
    srcs: Vec<OsString>,
    filter: Option<OsString>,
    ports: Vec<u16>,
    snaplen: Option<u32>,
) -> Result<(String, Option<String>), String> {
    let srcs = srcs
        .into_iter()
        .map(|s| utf8("--source", s))
        .collect::<Result<Vec<_>, _>>()?;
    let sources =
        sources::parse_source_map(&srcs.join(";")).map_err(|e| format!("--source: {e}."))?;
    let opts = offline::Options {
        sources,
        filter: utf8_opt("--filter", filter)?,
        ports: if ports.is_empty() { vec![4789] } else { ports },
        snaplen: snaplen.filter(|s| *s > 0),
    };
    let name = input.display().to_string();
    let shown = output.display().to_string();
    // Both checked before the input is opened, which waits for a writer when it is a fifo.
    let in_meta = files::check_input(input)?;
    let target = files::output_for(output, input, &in_meta)?;
    let file = files::open_input(input)?;
    // A write error (a full disk, /dev/full) names the output and the way out.
    let named = |e: String| {
        match e.strip_prefix("Cannot write the output: ") {
        Some(why) => format!(
            "Cannot write {}: {}; check that it can take the output (free space, a reader) or choose another path with -w.",
            if output.as_os_str() == "-" {
                "stdout"
            } else {
                &shown
            },
            why.trim_end_matches('.')
        ),
        None => e,
    }
    };
    let report = match &target {
        files::Output::Stdout => {
            offline::decap(file, std::io::stdout().lock(), &opts, &name).map_err(named)?
        }
        t => {
            let w = files::Writing::start(t, &shown)?;
            let r = offline::decap(file, std::io::BufWriter::new(&w.file), &opts, &name)
                .map_err(named)?;
            w.commit()?;
            r
        }
    };
    let warning = report.damaged.as_ref().map(|why| {
        format!(
            "{name} is cut short or damaged after packet {n} ({why}); the {n} packets before it were decapsulated into {shown} and the rest of the file was skipped.",
            n = report.packets_read
        )
    });
    Ok((report.summary(&shown), warning))
}
