use awsvpc::{extcap, install, offline, sources};
use clap::{Parser, Subcommand};
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
    /// Decapsulate a capture taken on a mirror target into pcapng, one interface per source.
    Decap {
        /// pcap or pcapng from the mirror target (e.g. tcpdump -w m.pcap udp port 4789).
        input: PathBuf,
        /// Output pcapng file ("-" for stdout).
        #[arg(short = 'w', long = "write")]
        output: PathBuf,
        /// A mirror source: VNI=ENI[,MAC] (repeatable). The MAC gives direction flags.
        #[arg(long = "source", value_name = "VNI=ENI[,MAC]")]
        sources: Vec<String>,
        /// Keep only inner frames matching this libpcap filter.
        #[arg(long)]
        filter: Option<String>,
        /// UDP port of the VXLAN (repeatable; default 4789).
        #[arg(long = "port")]
        ports: Vec<u16>,
        /// Bytes kept of each inner frame.
        #[arg(long)]
        snaplen: Option<u32>,
    },
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if extcap::args::is_extcap_call(&argv) {
        return extcap::run(&argv, &mut std::io::stdout().lock());
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Install { dir, symlink } => install::install(dir.as_deref(), symlink),
        Cmd::Uninstall { dir } => install::uninstall(dir.as_deref()),
        Cmd::Decap {
            input,
            output,
            sources: srcs,
            filter,
            ports,
            snaplen,
        } => decap_command(&input, &output, &srcs, filter, ports, snaplen),
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

fn decap_command(
    input: &std::path::Path,
    output: &std::path::Path,
    srcs: &[String],
    filter: Option<String>,
    ports: Vec<u16>,
    snaplen: Option<u32>,
) -> Result<String, String> {
    let sources =
        sources::parse_source_map(&srcs.join(";")).map_err(|e| format!("--source: {e}."))?;
    let opts = offline::Options {
        sources,
        filter,
        ports: if ports.is_empty() { vec![4789] } else { ports },
        snaplen: snaplen.filter(|s| *s > 0),
    };
    let name = input.display().to_string();
    let file = std::fs::File::open(input).map_err(|e| format!("Cannot read {name}: {e}."))?;
    let report = if output.as_os_str() == "-" {
        offline::decap(file, std::io::stdout().lock(), &opts, &name)?
    } else {
        let tmp = output.with_extension("awsvpc-partial");
        let out = std::fs::File::create(&tmp)
            .map_err(|e| format!("Cannot write {}: {e}.", tmp.display()))?;
        let r = offline::decap(file, std::io::BufWriter::new(out), &opts, &name);
        match r {
            Ok(r) => {
                std::fs::rename(&tmp, output)
                    .map_err(|e| format!("Cannot write {}: {e}.", output.display()))?;
                r
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
    };
    // With "-w -" stdout is the capture; the summary goes where it cannot corrupt it.
    let summary = report.summary(&output.display().to_string());
    if output.as_os_str() == "-" {
        eprintln!("{summary}");
        Ok(String::new())
    } else {
        Ok(summary)
    }
}
