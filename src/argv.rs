//! Lenient parsing of the argv Wireshark builds: `--x v` and `--x=v`, boolean flags given
//! bare or as `--flag true|false` (as reload calls send them), `--extcap-version` with or
//! without a value, and unknown arguments kept aside (logged, never fatal) so that an older
//! or newer Wireshark, or a saved preference from another version, never breaks a capture.

//!
//! Below `config` (which builds the capture configuration from it) and `extcap` (which
//! answers Wireshark with it): the argv model imports only the manifest.

use crate::manifest::Manifest;
use std::collections::BTreeMap;

/// What Wireshark asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Interfaces,
    Dlts,
    Config {
        reload: Option<String>,
    },
    ValidateFilter(String),
    Capture,
    /// No extcap step was named (a person ran the binary with extcap flags only).
    None,
}

#[derive(Debug, Clone, Default)]
pub struct ExtcapArgs {
    pub interfaces: bool,
    pub dlts: bool,
    pub config: bool,
    pub capture: bool,
    pub version: Option<String>,
    pub interface: Option<String>,
    pub fifo: Option<String>,
    pub control_in: Option<String>,
    pub control_out: Option<String>,
    pub capture_filter: Option<String>,
    pub reload_option: Option<String>,
    /// Product options by call name without dashes prefix (`profile`, `listen-port`, …).
    pub options: BTreeMap<String, String>,
    /// Arguments that were not understood, for the log.
    pub unknown: Vec<String>,
}

/// How an option consumes the argv after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Takes the next element as its value.
    Value,
    /// A flag: bare means true; a following `true`/`false` is consumed as its value.
    Flag,
}

fn builtin(name: &str) -> Option<Kind> {
    Some(match name {
        "extcap-interfaces" | "extcap-dlts" | "extcap-config" | "capture" => Kind::Flag,
        "extcap-interface"
        | "fifo"
        | "extcap-control-in"
        | "extcap-control-out"
        | "extcap-capture-filter"
        | "extcap-reload-option" => Kind::Value,
        _ => return None,
    })
}

fn is_bool_word(s: &str) -> bool {
    s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false")
}

/// Parses `argv` (without the program name). `product` says how each product option (by
/// call without the leading dashes) takes its value.
pub fn parse<I, S>(argv: I, product: &dyn Fn(&str) -> Option<Kind>) -> ExtcapArgs
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
    let mut a = ExtcapArgs::default();
    let mut i = 0;
    while i < argv.len() {
        let tok = &argv[i];
        i += 1;
        let Some(body) = tok.strip_prefix("--") else {
            a.unknown.push(tok.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "extcap-version" {
            // Optional value, only ever in the `=` form (Wireshark always sends `=X.Y`).
            a.version = Some(inline.unwrap_or_default());
            continue;
        }
        let kind = builtin(name).or_else(|| product(name));
        let value = match (kind, inline) {
            (_, Some(v)) => Some(v),
            (Some(Kind::Value), None) => {
                let v = argv.get(i).cloned();
                if v.is_some() {
                    i += 1;
                }
                v
            }
            (Some(Kind::Flag), None) => match argv.get(i) {
                Some(v) if is_bool_word(v) => {
                    i += 1;
                    Some(v.to_ascii_lowercase())
                }
                _ => Some("true".to_string()),
            },
            (None, None) => {
                // Unknown: take a following non-option as its value so it is not misread.
                let v = argv.get(i).filter(|v| !v.starts_with("--")).cloned();
                if v.is_some() {
                    i += 1;
                }
                v
            }
        };
        let flag = |v: &Option<String>| {
            v.as_deref()
                .is_some_and(|v| !v.eq_ignore_ascii_case("false"))
        };
        match name {
            "extcap-interfaces" => a.interfaces = flag(&value),
            "extcap-dlts" => a.dlts = flag(&value),
            "extcap-config" => a.config = flag(&value),
            "capture" => a.capture = flag(&value),
            "extcap-interface" => a.interface = value,
            "fifo" => a.fifo = value,
            "extcap-control-in" => a.control_in = value,
            "extcap-control-out" => a.control_out = value,
            "extcap-capture-filter" => a.capture_filter = value,
            "extcap-reload-option" => a.reload_option = value,
            _ if kind.is_some() => {
                a.options
                    .insert(name.to_string(), value.unwrap_or_default());
            }
            _ => a.unknown.push(match value {
                Some(v) => format!("{tok} {v}"),
                None => tok.clone(),
            }),
        }
    }
    a
}

impl ExtcapArgs {
    /// Wireshark's own precedence: an explicit step wins over the others in this order.
    pub fn step(&self) -> Step {
        if self.interfaces {
            Step::Interfaces
        } else if self.dlts {
            Step::Dlts
        } else if self.config {
            Step::Config {
                reload: self.reload_option.clone(),
            }
        } else if self.capture {
            Step::Capture
        } else if let Some(f) = &self.capture_filter {
            Step::ValidateFilter(f.clone())
        } else {
            Step::None
        }
    }

    /// A product option's value, `None` when absent or empty (Wireshark passes empty
    /// strings for cleared preferences in some paths).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.options
            .get(name)
            .map(|s| s.as_str())
            .filter(|s| !s.trim().is_empty())
    }
}

/// True when `argv` is an extcap invocation rather than a subcommand.
pub fn is_extcap_call(argv: &[String]) -> bool {
    argv.iter().any(|a| {
        let n = a.split('=').next().unwrap_or("");
        matches!(
            n,
            "--extcap-interfaces"
                | "--extcap-dlts"
                | "--extcap-config"
                | "--capture"
                | "--extcap-capture-filter"
                | "--extcap-interface"
                | "--extcap-version"
        )
    })
}

/// How each product option takes its value, from the manifest.
pub fn option_kind(manifest: &Manifest) -> impl Fn(&str) -> Option<Kind> + '_ {
    move |name: &str| {
        manifest
            .args
            .iter()
            .find(|a| a.call.strip_prefix("--") == Some(name))
            .map(|a| match a.kind.as_str() {
                "boolflag" | "boolean" => Kind::Flag,
                _ => Kind::Value,
            })
    }
}

/// Parses Wireshark's argv with the manifest's option kinds.
pub fn parse_argv(argv: &[String]) -> ExtcapArgs {
    let m = Manifest::load();
    parse(argv.iter().cloned(), &option_kind(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(name: &str) -> Option<Kind> {
        match name {
            "amazon-dns" => Some(Kind::Flag),
            "profile" | "listen-port" | "eni" => Some(Kind::Value),
            _ => None,
        }
    }

    fn p(v: &[&str]) -> ExtcapArgs {
        parse(v.iter().copied(), &product)
    }

    #[test]
    fn wireshark_forms() {
        let a = p(&["--extcap-interfaces", "--extcap-version=4.0"]);
        assert_eq!(a.step(), Step::Interfaces);
        assert_eq!(a.version.as_deref(), Some("4.0"));
        assert_eq!(p(&["--extcap-version"]).version.as_deref(), Some(""));
        let a = p(&[
            "--capture",
            "--extcap-interface",
            "awsvpc",
            "--fifo",
            "/tmp/f",
            "--extcap-capture-filter",
            "not port 22",
            "--profile=prod",
            "--amazon-dns",
            "--listen-port",
            "4789",
        ]);
        assert_eq!(a.step(), Step::Capture);
        assert_eq!(a.fifo.as_deref(), Some("/tmp/f"));
        assert_eq!(a.capture_filter.as_deref(), Some("not port 22"));
        assert_eq!(a.get("profile"), Some("prod"));
        assert_eq!(a.get("amazon-dns"), Some("true"));
        assert_eq!(a.get("listen-port"), Some("4789"));
    }

    #[test]
    fn reload_sends_booleans_as_words() {
        let a = p(&[
            "--extcap-config",
            "--extcap-interface",
            "awsvpc",
            "--extcap-reload-option",
            "eni",
            "--amazon-dns",
            "false",
            "--profile",
            "prod",
        ]);
        assert_eq!(
            a.step(),
            Step::Config {
                reload: Some("eni".into())
            }
        );
        assert_eq!(a.get("amazon-dns"), Some("false"));
        assert_eq!(a.get("profile"), Some("prod"));
        assert!(a.unknown.is_empty());
    }

    #[test]
    fn unknown_arguments_are_kept_aside() {
        let a = p(&[
            "--capture",
            "--future-thing",
            "x",
            "--other",
            "--profile",
            "p",
            "stray",
        ]);
        assert_eq!(a.unknown, vec!["--future-thing x", "--other", "stray"]);
        assert_eq!(a.get("profile"), Some("p"));
    }

    #[test]
    fn validation_without_capture() {
        let a = p(&[
            "--extcap-capture-filter",
            "tcp",
            "--extcap-interface",
            "awsvpc",
        ]);
        assert_eq!(a.step(), Step::ValidateFilter("tcp".into()));
    }

    #[test]
    fn missing_value_at_end_is_not_a_panic() {
        let a = p(&["--capture", "--fifo"]);
        assert_eq!(a.fifo, None);
        assert_eq!(p(&["--eni"]).get("eni"), None);
    }
}
