//! The capture configuration, checked once at capture start: every problem becomes one
//! sentence naming the setting and the fix.

use crate::argv::ExtcapArgs;
use crate::log::Level;
use crate::manifest::Manifest;
use crate::sources::{parse_source_map, KnownSource};
use std::net::IpAddr;

/// A setting awsvpc refuses before anything runs; each `Display` is the sentence naming
/// the setting and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value not of the form the option takes.
    #[error("--{option} must be {expected}, not {given:?}.")]
    Invalid {
        option: String,
        expected: String,
        given: String,
    },
    /// Settings that do not go together, or one that needs another.
    #[error("{0}")]
    Conflict(String),
    /// A value of the right form that awsvpc still cannot use (a file ssh cannot take, an
    /// option whose feature is not built), with the reason in the sentence.
    #[error("{0}")]
    Refused(String),
}

/// Callers above that still speak in sentences take the sentence.
impl From<ConfigError> for String {
    fn from(e: ConfigError) -> String {
        e.to_string()
    }
}

fn invalid(option: &str, expected: impl Into<String>, given: &str) -> ConfigError {
    ConfigError::Invalid {
        option: option.to_string(),
        expected: expected.into(),
        given: given.to_string(),
    }
}

/// `--collector`, as the option names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CollectorMode {
    Local,
    Host,
    Ephemeral,
}

/// Where the mirror is received and how awsvpc reaches it (`--collector`, `--connect`,
/// `--ssh-*`, `--target-id`, the launch options): a variant per way, each holding only
/// what that way uses, so that no capture carries a setting it ignores or lacks one it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collector {
    /// This machine receives the mirror.
    Local,
    /// An existing collector, its relay streamed here over the system ssh. `target_id`: its
    /// mirror target (never deleted), needed to mirror ENIs; without ENIs awsvpc receives.
    HostSsh {
        ssh: SshTarget,
        target_id: Option<String>,
    },
    /// The collector instance behind the mirror target `target_id`, its relay started
    /// through its SSM agent and streamed over a Session Manager port session.
    HostSsm { target_id: String },
    /// An instance launched for the capture.
    Ephemeral(Ephemeral),
}

/// `--collector ephemeral`: what to launch and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ephemeral {
    /// SSH (keys generated for the capture, the host key pinned) or Session Manager.
    pub connect: Connect,
    /// What overrides the instance's address, port and user (`host` empty: its own address).
    pub ssh: SshTarget,
    pub launch: LaunchOptions,
}

impl Collector {
    /// How a remote collector's stream reaches this machine; `None` for this machine's own.
    pub fn connect(&self) -> Option<Connect> {
        match self {
            Collector::Local => None,
            Collector::HostSsh { .. } => Some(Connect::Ssh),
            Collector::HostSsm { .. } => Some(Connect::Ssm),
            Collector::Ephemeral(e) => Some(e.connect),
        }
    }

    /// `--target-id`: the existing mirror target of a host collector.
    pub fn target_id(&self) -> Option<&str> {
        match self {
            Collector::HostSsh { target_id, .. } => target_id.as_deref(),
            Collector::HostSsm { target_id } => Some(target_id),
            Collector::Local | Collector::Ephemeral(_) => None,
        }
    }

    /// The SSH port of a collector reached over SSH, whose tunnel must stay out of the
    /// mirror (22 unless `--ssh-port` says otherwise).
    pub fn ssh_port(&self) -> Option<u16> {
        match self {
            Collector::HostSsh { ssh, .. } => Some(ssh.port.unwrap_or(22)),
            Collector::Ephemeral(e) if e.connect == Connect::Ssh => Some(e.ssh.port.unwrap_or(22)),
            _ => None,
        }
    }
}

/// How a remote collector's stream reaches this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    Ssh,
    Ssm,
}

/// `--capture-mode`: how each ENI is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMode {
    /// Through a mirror where AWS can, on the ENI's own instance where it cannot.
    Auto,
    /// Through a mirror only (an ENI AWS cannot mirror is refused).
    Mirror,
    /// On each ENI's own instance: no mirror session, target or collector.
    OnHost,
}

/// `--collector ephemeral`: what to launch and who may reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchOptions {
    /// `--launch-template`: an id (`lt-…`) or a name.
    pub launch_template: Option<String>,
    /// `--instance-type`.
    pub instance_type: Option<String>,
    /// `--instance-profile`: a name or ARN, for the SSM agent.
    pub instance_profile: Option<String>,
    /// `--ssh-allow`: the CIDR the security group admits SSH from (default: this machine's
    /// public address).
    pub ssh_allow: Option<String>,
}

/// How to reach a remote collector over SSH (`--ssh-*`, or `~/.ssh/config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshTarget {
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub key: Option<String>,
    pub known_hosts: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub collector: Collector,
    pub profile: Option<String>,
    pub region: Option<String>,
    pub vpc: Option<String>,
    /// ENIs to mirror; empty means no AWS call at all: awsvpc receives what arrives.
    pub enis: Vec<String>,
    pub session_number: Option<i32>,
    pub amazon_dns: bool,
    /// `--capture-mode`, and how an on-host capture reaches its instance
    /// (`--on-host-connect`, Session Manager by default).
    pub capture_mode: CaptureMode,
    pub on_host_connect: Connect,
    /// Bytes kept per frame of an on-host capture: `--snaplen`, else headers only over
    /// Session Manager as for a remote collector.
    pub on_host_snaplen: Option<u32>,
    /// `--diagnose reachability`: a silent source's path is also put to EC2 Reachability
    /// Analyzer, once per source (AWS bills each analysis).
    pub reachability: bool,
    pub cleanup_expired: bool,
    pub listen_addr: IpAddr,
    pub listen_port: u16,
    /// Bytes kept of each inner frame; `None` keeps whole frames.
    pub snaplen: Option<u32>,
    /// `--vni`: the VNI to accept (local) or the first VNI of the sessions (AWS).
    pub vni: Option<u32>,
    /// Datagrams with other VNIs are unexpected; `None` accepts any.
    pub expected_vnis: Option<Vec<u32>>,
    pub sources: Vec<KnownSource>,
    pub filter: Option<String>,
    pub log_level: Level,
    pub log_file: Option<String>,
}

impl CaptureConfig {
    /// The relay options of a remote collector (`--listen-addr`, `--listen-port`,
    /// `--snaplen`).
    pub fn relay(&self) -> crate::relay::RelayOptions {
        crate::relay::RelayOptions {
            listen_addr: self.listen_addr,
            listen_port: self.listen_port,
            snaplen: self.snaplen,
            bind_wait_s: 0,
            on_host: None,
        }
    }

    /// Whether this capture calls AWS: it mirrors ENIs, launches a collector, or reaches
    /// one through Session Manager.
    pub fn uses_aws(&self) -> bool {
        !self.enis.is_empty()
            || matches!(
                self.collector,
                Collector::Ephemeral(_) | Collector::HostSsm { .. }
            )
    }
}

fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    args: &ExtcapArgs,
    name: &str,
    min: T,
    max: T,
    what: &str,
) -> Result<Option<T>, ConfigError> {
    match args.get(name) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(Some(n)),
            _ => Err(invalid(name, format!("{what} from {min} to {max}"), v)),
        },
    }
}

/// The log settings alone, so the log can start before anything else is checked.
pub fn log_settings(args: &ExtcapArgs) -> Result<(Level, Option<String>), ConfigError> {
    let level = match args.get("log-level") {
        None => Level::Message,
        Some(v) => Level::parse(v)
            .ok_or_else(|| invalid("log-level", "message, info, debug or noisy", v))?,
    };
    Ok((level, args.get("log-file").map(str::to_string)))
}

impl CaptureConfig {
    pub fn from_args(args: &ExtcapArgs, manifest: &Manifest) -> Result<Self, ConfigError> {
        let (log_level, log_file) = log_settings(args)?;
        let mode = match args.get("collector").unwrap_or("ephemeral") {
            "local" => CollectorMode::Local,
            "host" => CollectorMode::Host,
            "ephemeral" => CollectorMode::Ephemeral,
            other => return Err(invalid("collector", "ephemeral, host or local", other)),
        };
        // An argument whose feature is not built yet must never silently do nothing.
        for a in manifest.args.iter().filter(|a| a.planned.is_some()) {
            let name = &a.call[2..];
            let Some(v) = args.get(name) else { continue };
            let is_default = a.default.as_deref() == Some(v)
                || (a.kind == "boolflag" && v.eq_ignore_ascii_case("false"))
                || a.values.iter().any(|x| x.default && x.value == v);
            if !is_default {
                return Err(ConfigError::Refused(format!(
                    "{} is set to {v:?}, but {} is not in this build of awsvpc yet; clear it (-o extcap.awsvpc.{}:) to capture with the local collector.",
                    a.call,
                    a.planned.as_deref().unwrap_or_default(),
                    crate::manifest::pref_suffix(&a.call)
                )));
            }
        }
        let listen_addr = match args.get("listen-addr") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| invalid("listen-addr", "an IP address such as 0.0.0.0 or ::", v))?,
        };
        let connect = match args.get("connect").unwrap_or("ssh") {
            "ssh" => Connect::Ssh,
            "ssm" => Connect::Ssm,
            other => return Err(invalid("connect", "ssh or ssm", other)),
        };
        let listen_port =
            number::<u16>(args, "listen-port", 1, 65535, "a UDP port")?.unwrap_or(4789);
        let asked_snaplen = number::<u32>(args, "snaplen", 0, 65535, "a byte count")?;
        // Session Manager carries about 1 MB/s: headers only, unless asked otherwise (0 asks
        // for whole frames); the same for a remote collector and an on-host capture.
        let snaplen_over = |ssm: bool| match asked_snaplen {
            None if ssm => Some(crate::transport::ssm::DEFAULT_SNAPLEN),
            n => n.filter(|n| *n > 0),
        };
        let vni = number::<u32>(args, "vni", 0, (1 << 24) - 1, "a VXLAN network identifier")?;
        let enis = match args.get("eni") {
            None => Vec::new(),
            Some(list) => parse_eni_list(list)?,
        };
        let session_number = number::<i32>(args, "session-number", 1, 32_766, "a session number")?;
        let flag = |name: &str, default: bool| match args.get(name) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(invalid(name, "true or false", v)),
        };
        let amazon_dns = flag("amazon-dns", false)?;
        let capture_mode = match args.get("capture-mode").unwrap_or("auto") {
            "auto" => CaptureMode::Auto,
            "mirror" => CaptureMode::Mirror,
            "on-host" => CaptureMode::OnHost,
            other => return Err(invalid("capture-mode", "auto, mirror or on-host", other)),
        };
        let on_host_connect = match args.get("on-host-connect").unwrap_or("ssm") {
            "ssh" => Connect::Ssh,
            "ssm" => Connect::Ssm,
            other => return Err(invalid("on-host-connect", "ssm or ssh", other)),
        };
        let on_host_snaplen = snaplen_over(on_host_connect == Connect::Ssm);
        let reachability = match args.get("diagnose").unwrap_or("checks") {
            "checks" => false,
            "reachability" => true,
            other => return Err(invalid("diagnose", "checks or reachability", other)),
        };
        let cleanup_expired = flag("cleanup-expired", true)?;
        let word =
            |name: &str, what: &str, ok: fn(char) -> bool| -> Result<Option<String>, ConfigError> {
                match args.get(name) {
                    None => Ok(None),
                    Some(v) if v.chars().all(ok) => Ok(Some(v.to_string())),
                    Some(v) => Err(invalid(name, what, v)),
                }
            };
        let profile = word("profile", "an AWS profile name", |c| {
            !c.is_whitespace() && c != ']' && c != '['
        })?;
        let region = word("region", "an AWS Region such as eu-west-1", |c| {
            c.is_ascii_alphanumeric() || c == '-'
        })?;
        let vpc = word("vpc", "a VPC id such as vpc-0abc", |c| {
            c.is_ascii_alphanumeric() || c == '-'
        })?;
        if let Some(v) = &vpc {
            if !v.starts_with("vpc-") {
                return Err(invalid("vpc", "a VPC id such as vpc-0abc", v));
            }
        }
        let sources = match args.get("source") {
            None => Vec::new(),
            Some(s) => {
                parse_source_map(s).map_err(|e| ConfigError::Refused(format!("--source: {e}.")))?
            }
        };
        if let Some(v) = vni {
            if !sources.is_empty() && !sources.iter().any(|s| s.vni == v) {
                return Err(ConfigError::Conflict(format!(
                    "--vni {v} accepts only VNI {v}, but --source names none with that VNI; add it to --source or clear --vni."
                )));
            }
        }
        let target_id = match args
            .get("target-id")
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            None => None,
            Some(t)
                if t.strip_prefix("tmt-")
                    .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit())) =>
            {
                Some(t.to_string())
            }
            Some(t) => {
                return Err(invalid(
                    "target-id",
                    "a traffic mirror target id such as tmt-0abc12",
                    t,
                ))
            }
        };
        let collector = match (mode, connect) {
            (CollectorMode::Local, _) => match target_id {
                Some(t) => return Err(ConfigError::Conflict(format!("--target-id {t} names an existing mirror target, which only --collector host uses; clear it, or use --collector host with --ssh-host."))),
                None => Collector::Local,
            },
            (CollectorMode::Host, Connect::Ssm) => match target_id {
                // Over SSM the host is the instance behind --target-id.
                Some(target_id) => Collector::HostSsm { target_id },
                None => return Err(ConfigError::Conflict("--collector host --connect ssm needs --target-id: the traffic mirror target of the collector instance, whose SSM agent starts the relay (pick it in the Collector tab).".into())),
            },
            (CollectorMode::Host, Connect::Ssh) => {
                let ssh = ssh_target(args, true)?;
                if target_id.is_none() && !enis.is_empty() {
                    return Err(ConfigError::Conflict("--collector host with --eni needs --target-id: the existing traffic mirror target that delivers to that host (pick it in the Collector tab).".into()));
                }
                Collector::HostSsh { ssh, target_id }
            }
            (CollectorMode::Ephemeral, connect) => {
                let ssh = ssh_target(args, false)?;
                let launch = launch_options(args)?;
                if let Some(t) = target_id {
                    return Err(ConfigError::Conflict(format!("--target-id {t} names an existing mirror target, but --collector ephemeral launches a collector of its own; clear --target-id, or use --collector host.")));
                }
                if enis.is_empty() {
                    return Err(ConfigError::Conflict("--collector ephemeral launches a collector for the ENIs to mirror; choose them with --eni (the AWS tab), or use --collector host or local.".into()));
                }
                Collector::Ephemeral(Ephemeral {
                    connect,
                    ssh,
                    launch,
                })
            }
        };
        let snaplen = snaplen_over(collector.connect() == Some(Connect::Ssm));
        Ok(CaptureConfig {
            collector,
            profile,
            region,
            vpc,
            enis,
            session_number,
            amazon_dns,
            capture_mode,
            on_host_connect,
            on_host_snaplen,
            reachability,
            cleanup_expired,
            listen_addr,
            listen_port,
            snaplen,
            vni,
            expected_vnis: vni.map(|v| vec![v]),
            sources,
            filter: args.capture_filter.clone().filter(|f| !f.trim().is_empty()),
            log_level,
            log_file,
        })
    }
}

/// The SSH settings, checked: `--collector host` needs `--ssh-host` (`required`); for
/// `--collector ephemeral` it only overrides the instance's address.
fn ssh_target(args: &ExtcapArgs, required: bool) -> Result<SshTarget, ConfigError> {
    let host = args.get("ssh-host").map(str::trim).unwrap_or_default();
    if host.is_empty() && required {
        return Err(ConfigError::Conflict("--collector host needs --ssh-host: the collector's address or its name in ~/.ssh/config.".into()));
    }
    // ssh takes a leading '-' as an option: refuse what could smuggle one in.
    let plain =
        |v: &str| !v.starts_with('-') && !v.chars().any(|c| c.is_whitespace() || c.is_control());
    if !host.is_empty() && !plain(host) {
        return Err(invalid(
            "ssh-host",
            "a host name, address or ~/.ssh/config alias",
            host,
        ));
    }
    let port = match args.get("ssh-port") {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid("ssh-port", "a TCP port from 1 to 65535", v))?,
        ),
    };
    let user = match args.get("ssh-user") {
        Some(u) if !plain(u) || u.is_empty() => {
            return Err(invalid("ssh-user", "a user name such as ec2-user", u))
        }
        u => u.map(str::to_string),
    };
    let file = |name: &str, what: &str| -> Result<Option<String>, ConfigError> {
        match args.get(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            // ssh expands `${VAR}` in these paths and has no escape for it; a control
            // character would end its option line.
            Some(f) if f.chars().any(char::is_control) || f.contains("${") => Err(ConfigError::Refused(format!(
                "--{name} {f:?} has a character ssh cannot take in a file name (a control character or \"${{\"); rename the file or choose another."
            ))),
            // Absolute, so ssh's expansion of a leading ~ cannot apply.
            Some(f) if std::path::Path::new(f).is_file() => Ok(Some(
                std::path::absolute(f)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| f.to_string()),
            )),
            Some(f) => Err(ConfigError::Refused(format!(
                "--{name} {f:?} is not a readable file; choose {what}."
            ))),
        }
    };
    Ok(SshTarget {
        host: host.to_string(),
        port,
        user,
        key: file("ssh-key", "the private key for the collector")?,
        known_hosts: file(
            "ssh-known-hosts",
            "a known_hosts file with the collector's host key",
        )?,
    })
}

/// `--collector ephemeral`: the launch template, instance type and SSH source, checked.
fn launch_options(args: &ExtcapArgs) -> Result<LaunchOptions, ConfigError> {
    let value = |name: &str| args.get(name).map(str::trim).filter(|v| !v.is_empty());
    let launch_template = match value("launch-template") {
        None => None,
        // AWS: 3–128 characters of letters, digits and ( ) . / _ - ; or an id lt-….
        Some(t)
            if (3..=128).contains(&t.len())
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "()./_-".contains(c)) =>
        {
            Some(t.to_string())
        }
        Some(t) => {
            return Err(invalid(
                "launch-template",
                "a launch template id such as lt-0abc12 or its name",
                t,
            ))
        }
    };
    let instance_type = match value("instance-type") {
        None => None,
        Some(t)
            if t.split_once('.').is_some_and(|(f, s)| {
                !f.is_empty()
                    && !s.is_empty()
                    && f.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            }) =>
        {
            Some(t.to_string())
        }
        Some(t) => {
            return Err(invalid(
                "instance-type",
                "an EC2 instance type such as t4g.nano",
                t,
            ))
        }
    };
    let instance_profile = match value("instance-profile") {
        None => None,
        // IAM names: letters, digits and +=,.@_- ; or an instance-profile ARN.
        Some(p)
            if p.len() <= 2048
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-:/".contains(c)) =>
        {
            Some(p.to_string())
        }
        Some(p) => {
            return Err(invalid(
                "instance-profile",
                "an IAM instance profile name or ARN",
                p,
            ))
        }
    };
    let ssh_allow = match value("ssh-allow") {
        None => None,
        Some(c) => Some(
            parse_ipv4_cidr(c)
                .ok_or_else(|| invalid("ssh-allow", "an IPv4 CIDR such as 203.0.113.7/32", c))?,
        ),
    };
    Ok(LaunchOptions {
        launch_template,
        instance_type,
        instance_profile,
        ssh_allow,
    })
}

/// `a.b.c.d/n` (or a bare address, taken as /32), normalised.
fn parse_ipv4_cidr(s: &str) -> Option<String> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, len.parse::<u8>().ok().filter(|l| *l <= 32)?),
        None => (s, 32),
    };
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    Some(format!("{ip}/{len}"))
}

/// `--eni`: ENI ids separated by commas (the multicheck form) or spaces.
pub fn parse_eni_list(list: &str) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for e in list
        .split([',', ' ', ';'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let ok = e.strip_prefix("eni-").is_some_and(|h| {
            !h.is_empty() && h.len() <= 32 && h.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !ok {
            return Err(ConfigError::Refused(format!(
                "--eni must list ENI ids such as eni-0abc12 separated by commas; {e:?} is not one."
            )));
        }
        if !out.iter().any(|x| x == e) {
            out.push(e.to_string());
        }
    }
    if out.is_empty() {
        return Err(ConfigError::Refused(
            "--eni is set but lists no ENI; give ids such as eni-0abc12.".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argv::parse_argv;

    fn err(argv: &[&str]) -> String {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        CaptureConfig::from_args(&parse_argv(&argv), Manifest::load())
            .unwrap_err()
            .to_string()
    }

    /// Found by fuzzing: a value with a line break made a two-line error.
    #[test]
    fn echoed_values_stay_on_one_line() {
        let e = err(&["--capture", "--collector", "local", "--log-level", "--bu\n"]);
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains(r#"not "--bu\n""#), "{e}");
        let e = err(&[
            "--capture",
            "--collector",
            "local",
            "--source",
            "1=eni-1,0\n2",
        ]);
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn eni_lists() {
        assert_eq!(
            parse_eni_list("eni-0abc, eni-0def,eni-0abc").unwrap(),
            vec!["eni-0abc", "eni-0def"]
        );
        assert!(parse_eni_list("eni-0abc,i-123")
            .unwrap_err()
            .to_string()
            .contains("\"i-123\" is not one"));
        assert!(parse_eni_list("eni-").is_err());
        assert!(parse_eni_list(" , ").is_err());
    }

    #[test]
    fn arguments_are_checked_for_the_collector_mode() {
        let ok = [
            "--capture",
            "--collector",
            "local",
            "--connect",
            "ssh",
            "--amazon-dns",
            "false",
            "--listen-port",
            "4789",
        ];
        let argv: Vec<String> = ok.iter().map(|s| s.to_string()).collect();
        assert!(CaptureConfig::from_args(&parse_argv(&argv), Manifest::load()).is_ok());
        assert!(err(&[
            "--capture",
            "--collector",
            "host",
            "--ssh-host",
            "h",
            "--connect",
            "ssm"
        ])
        .contains("--connect ssm"));
        assert!(err(&["--capture", "--collector", "host"]).contains("needs --ssh-host"));
        assert!(err(&[
            "--capture",
            "--collector",
            "host",
            "--ssh-host",
            "-oProxyCommand=x"
        ])
        .contains("--ssh-host must be"));
        assert!(err(&[
            "--capture",
            "--collector",
            "host",
            "--ssh-host",
            "h",
            "--eni",
            "eni-1"
        ])
        .contains("needs --target-id"));
        assert!(
            err(&["--capture", "--collector", "local", "--target-id", "tmt-1"])
                .contains("only --collector host uses")
        );
        assert!(err(&["--capture"]).contains("--collector ephemeral launches a collector"));
        assert!(
            err(&["--capture", "--eni", "eni-1", "--target-id", "tmt-1"])
                .contains("clear --target-id")
        );
        assert!(
            err(&["--capture", "--eni", "eni-1", "--instance-type", "t4g"])
                .contains("--instance-type must be")
        );
        assert!(
            err(&["--capture", "--eni", "eni-1", "--ssh-allow", "10.0.0.0/33"])
                .contains("--ssh-allow must be")
        );
    }
}
