//! The extcap manifest (`extcap-manifest/awsvpc.json`), embedded at build time and rendered
//! as the sentences Wireshark parses (`extcap`, `interface`, `control`, `dlt`, `arg`, `value`).

use serde::Deserialize;
use std::fmt::Write as _;

const SOURCE: &str = include_str!("../extcap-manifest/awsvpc.json");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub extcap: Extcap,
    pub interface: Interface,
    pub dlts: Vec<Dlt>,
    pub controls: Vec<Control>,
    pub args: Vec<Arg>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extcap {
    pub display: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub value: String,
    pub display: String,
    /// `{control=N}`: a bit field, 1 = toolbar messages, 2 = the quit message. Wireshark
    /// 4.0–4.6 ignore the key on an interface sentence (their `extcap_parse_interface_sentence`
    /// reads only value, display, version and help); the development branch toward 5.0 reads
    /// it (`extcap_parser.c` in dreibh/wireshark ccf46bb120320c616e2b353f099d089d42066647).
    pub control: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dlt {
    pub number: u32,
    pub name: String,
    pub display: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Stable name the code refers to; the control number is the position.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub role: Option<String>,
    pub display: String,
    pub tooltip: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arg {
    pub call: String,
    pub display: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub group: String,
    pub tooltip: Option<String>,
    pub placeholder: Option<String>,
    pub default: Option<String>,
    pub range: Option<String>,
    pub validation: Option<String>,
    #[serde(default)]
    pub reload: bool,
    pub mustexist: Option<bool>,
    #[serde(default)]
    pub values: Vec<ArgValue>,
    /// Values computed when the configuration is rendered (local files only, never network).
    pub values_from: Option<String>,
    /// The feature this argument belongs to when that feature is not in this build yet.
    pub planned: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ArgValue {
    pub value: String,
    pub display: String,
    #[serde(default)]
    pub default: bool,
    /// A multicheck entry that is listed but cannot be chosen (an ENI that cannot be mirrored).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// Types Wireshark 4.0 understands; anything else makes 4.0 drop the argument.
const ARG_TYPES: &[&str] = &[
    "integer",
    "unsigned",
    "long",
    "double",
    "string",
    "password",
    "boolean",
    "boolflag",
    "selector",
    "radio",
    "multicheck",
    "fileselect",
    "timestamp",
];

impl Manifest {
    pub fn load() -> &'static Manifest {
        static M: std::sync::OnceLock<Manifest> = std::sync::OnceLock::new();
        M.get_or_init(|| {
            // The manifest is compiled in and checked by tests; failing here is a build bug.
            serde_json::from_str(SOURCE).expect("embedded extcap manifest is valid")
        })
    }

    /// Problems that would make Wireshark drop or misread a sentence, or make two calls map
    /// to one preference name.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut prefs = std::collections::HashSet::new();
        for a in &self.args {
            if !a.call.starts_with("--") {
                p.push(format!("{}: call must start with --", a.call));
            }
            if !prefs.insert(pref_suffix(&a.call)) {
                p.push(format!("{}: preference name collides", a.call));
            }
            if !ARG_TYPES.contains(&a.kind.as_str()) {
                p.push(format!(
                    "{}: type {} unknown to Wireshark 4.0",
                    a.call, a.kind
                ));
            }
            if a.default.is_some() && matches!(a.kind.as_str(), "selector" | "multicheck") {
                p.push(format!("{}: selector defaults belong on values", a.call));
            }
        }
        let texts = self.args.iter().flat_map(|a| {
            [
                Some(&a.display),
                a.tooltip.as_ref(),
                a.placeholder.as_ref(),
                a.default.as_ref(),
            ]
            .into_iter()
            .flatten()
            .chain(a.values.iter().map(|v| &v.display))
        });
        for t in texts.chain(self.controls.iter().map(|c| &c.display)) {
            if t.contains('{') || t.contains('}') {
                p.push(format!("\"{t}\" contains a brace"));
            }
        }
        p
    }

    pub fn arg(&self, call: &str) -> Option<(usize, &Arg)> {
        self.args.iter().enumerate().find(|(_, a)| a.call == call)
    }

    pub fn control_number(&self, id: &str) -> Option<u8> {
        self.controls
            .iter()
            .position(|c| c.id == id)
            .map(|n| n as u8)
    }

    /// `--extcap-interfaces`: version line, interface, toolbar controls. An empty `help`
    /// leaves the field out.
    pub fn render_interfaces(&self, version: &str, help: &str) -> String {
        let mut s = String::new();
        let e = &self.extcap;
        let help = if help.is_empty() {
            String::new()
        } else {
            format!("{{help={help}}}")
        };
        let _ = writeln!(
            s,
            "extcap {{version={version}}}{help}{{display={}}}",
            e.display
        );
        let i = &self.interface;
        // The WSDG's order: `interface {value=example2}{control=3}{display=…}`.
        let control = i
            .control
            .map(|c| format!("{{control={c}}}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "interface {{value={}}}{control}{{display={}}}",
            i.value, i.display
        );
        for (n, c) in self.controls.iter().enumerate() {
            let _ = write!(s, "control {{number={n}}}{{type={}}}", c.kind);
            if let Some(r) = &c.role {
                let _ = write!(s, "{{role={r}}}");
            }
            let _ = write!(s, "{{display={}}}", c.display);
            if let Some(t) = &c.tooltip {
                let _ = write!(s, "{{tooltip={t}}}");
            }
            s.push('\n');
        }
        s
    }

    /// `--extcap-dlts`.
    pub fn render_dlts(&self) -> String {
        self.dlts
            .iter()
            .map(|d| {
                format!(
                    "dlt {{number={}}}{{name={}}}{{display={}}}\n",
                    d.number, d.name, d.display
                )
            })
            .collect()
    }

    /// `--extcap-config`: every argument, then its values. `dynamic` supplies the values of
    /// arguments whose list is computed (`values_from`).
    pub fn render_config(&self, dynamic: &dyn Fn(&str) -> Vec<ArgValue>) -> String {
        let mut s = String::new();
        for (n, a) in self.args.iter().enumerate() {
            let _ = write!(
                s,
                "arg {{number={n}}}{{call={}}}{{display={}}}{{type={}}}",
                a.call, a.display, a.kind
            );
            for (k, v) in [
                ("tooltip", &a.tooltip),
                ("placeholder", &a.placeholder),
                ("default", &a.default),
                ("range", &a.range),
                ("validation", &a.validation),
            ] {
                if let Some(v) = v {
                    let _ = write!(s, "{{{k}={v}}}");
                }
            }
            if let Some(m) = a.mustexist {
                let _ = write!(s, "{{mustexist={m}}}");
            }
            if a.reload {
                s.push_str("{reload=true}");
            }
            let _ = writeln!(s, "{{group={}}}", a.group);
            let values = match &a.values_from {
                Some(from) => dynamic(from),
                None => a.values.clone(),
            };
            s.push_str(&render_values(n, &values));
        }
        s
    }
}

/// `value` sentences for argument `arg` (also the answer to a reload).
pub fn render_values(arg: usize, values: &[ArgValue]) -> String {
    let mut s = String::new();
    for v in values {
        let _ = write!(
            s,
            "value {{arg={arg}}}{{value={}}}{{display={}}}",
            sentence_safe(&v.value),
            sentence_safe(&v.display)
        );
        if v.default {
            s.push_str("{default=true}");
        }
        if !v.enabled {
            s.push_str("{enabled=false}");
        }
        s.push('\n');
    }
    s
}

/// Wireshark's sentence parser ends a value at `}{` or `} `; text from outside (profile
/// names, error messages) must not carry braces or line breaks.
pub fn sentence_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '{' => '(',
            '}' => ')',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect()
}

/// The preference suffix Wireshark derives from a call: every dash removed.
pub fn pref_suffix(call: &str) -> String {
    call.chars().filter(|c| *c != '-').collect()
}
