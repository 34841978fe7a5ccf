//! The shape of `src/` (issue 18): the top-level modules form layers that only point down,
//! and no two of them import each other, directly or through others. The graph is read
//! from the source text: every `crate::…` path (including `use crate::{a, b::c}` groups and
//! `$crate::` in macros) and every use of a `#[macro_export]` macro names the module it
//! reaches. Comments and string literals are left out; `main.rs` (the binary, above all
//! layers) and `lib.rs` (the module list) are not read.
//!
//! Run: `cargo test --test module_graph` (prints the offending edges with file:line).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. A module may import modules of its own layer and of the layers below it;
/// cycles inside a layer are refused separately.
const LAYERS: &[(&str, &[&str])] = &[
    // Leaf utilities every layer may use (the log's only import is civil dates), and the
    // platform: `sys`, what differs by OS beneath everything (the quinn-udp pattern), with
    // `batch`, the receive slots its socket code fills.
    (
        "base",
        &["batch", "civil", "files", "log", "manifest", "sys"],
    ),
    // The data path without I/O or AWS: typed views, decapsulation, routing, the capture
    // filter (libpcap's compiler, no capture), narrowing, the pcapng writer, the argv model,
    // the relay's codecs.
    (
        "core",
        &[
            "argv",
            "decap",
            "diagnose",
            "filter",
            "narrow",
            "pcap_reader",
            "pipeline",
            "relay",
            "sink",
            "sources",
            "wire",
        ],
    ),
    // What touches the OS, the network or local files: collectors, transports and the
    // source trait both implement, the capture loop and its configuration, installation.
    (
        "io",
        &[
            "aws_errors",
            "aws_profiles",
            "capture",
            "collector",
            "config",
            "help",
            "install",
            "offline",
            "source",
            "transport",
        ],
    ),
    // The AWS control plane, the mirror, and the capture plan over them (the one seam of
    // the `aws` feature; on-host capture is part of the plan).
    ("aws", &["aws", "mirror", "path_watch", "plan"]),
    // Wireshark's protocol, on top: imported by nothing.
    ("extcap", &["extcap"]),
];

/// Source text with comments removed and string and char literals emptied; line breaks
/// are kept so positions still give line numbers.
fn code_only(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let n = b.len();
    let mut out = String::with_capacity(src.len());
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < n {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < n && b[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < n {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
            continue;
        }
        let starts_word = i == 0 || !ident(b[i - 1]);
        if starts_word && (c == 'r' || (c == 'b' && next == Some('r'))) {
            let mut j = i + if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) == Some(&'"') {
                j += 1;
                while j < n {
                    if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    if b[j] == '\n' {
                        out.push('\n');
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
                continue;
            }
        }
        if c == '"' {
            i += 1;
            while i < n {
                match b[i] {
                    '\\' => i += 2,
                    '"' => {
                        i += 1;
                        break;
                    }
                    '\n' => {
                        out.push('\n');
                        i += 1;
                    }
                    _ => i += 1,
                }
            }
            out.push_str("\"\"");
            continue;
        }
        if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}'); otherwise a lifetime, kept.
            if next == Some('\\') {
                i += 3;
                while i < n && b[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
                continue;
            }
            if b.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The first segment of every `crate::` path in `code`, with its byte offset.
fn crate_paths(code: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find("crate") {
        let at = from + p;
        from = at + 5;
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) && c != '$') {
            continue;
        }
        let rest = code[from..].trim_start();
        if !rest.starts_with("::") {
            continue; // pub(crate), a `crate` keyword alone
        }
        let after = rest[2..].trim_start();
        let offset = code.len() - after.len();
        if let Some(group) = after.strip_prefix('{') {
            // `crate::{a, b::{c, d}, e}`: the first ident of each item at depth 1.
            let mut depth = 1;
            let mut item_start = true;
            let mut idx = 0;
            let g = group.as_bytes();
            while idx < g.len() && depth > 0 {
                let ch = g[idx] as char;
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && is_ident(c) => {
                        let end = group[idx..]
                            .find(|c: char| !is_ident(c))
                            .map_or(group.len(), |e| idx + e);
                        found.push((group[idx..end].to_string(), offset));
                        item_start = false;
                        idx = end;
                        continue;
                    }
                    _ => {}
                }
                idx += 1;
            }
        } else {
            let end = after.find(|c: char| !is_ident(c)).unwrap_or(after.len());
            if end > 0 {
                found.push((after[..end].to_string(), offset));
            }
        }
    }
    found
}

/// `#[macro_export] macro_rules! name` in `code`.
fn exported_macros(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find("#[macro_export]") {
        let at = from + p + "#[macro_export]".len();
        from = at;
        let rest = code[at..].trim_start();
        if let Some(r) = rest.strip_prefix("macro_rules!") {
            let r = r.trim_start();
            let end = r.find(|c: char| !is_ident(c)).unwrap_or(r.len());
            names.push(r[..end].to_string());
        }
    }
    names
}

/// Invocations `name!` of the given macros in `code` (not through a `crate::` path).
fn macro_uses(code: &str, name: &str) -> Vec<usize> {
    let needle = format!("{name}!");
    let mut at = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find(&needle) {
        let i = from + p;
        from = i + needle.len();
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        if code[..i].trim_end().ends_with("macro_rules!") {
            continue;
        }
        at.push(i);
    }
    at
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

type Edges = BTreeMap<(String, String), Vec<String>>;

/// Top-level modules and the edges between them, each with where it is made.
fn graph() -> (BTreeSet<String>, Edges) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let top = |p: &Path| {
        let rel = p.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        first.trim_end_matches(".rs").to_string()
    };
    let read: Vec<(PathBuf, String, String)> = files
        .iter()
        .filter(|p| {
            let rel = p.strip_prefix(&src).unwrap();
            rel != Path::new("main.rs") && rel != Path::new("lib.rs")
        })
        .map(|p| {
            (
                p.clone(),
                top(p),
                code_only(&std::fs::read_to_string(p).unwrap()),
            )
        })
        .collect();
    let modules: BTreeSet<String> = read.iter().map(|(_, m, _)| m.clone()).collect();
    let mut macros = BTreeMap::new();
    for (_, m, code) in &read {
        for name in exported_macros(code) {
            macros.insert(name, m.clone());
        }
    }
    let mut edges = Edges::new();
    for (path, from, code) in &read {
        let line = |offset: usize| code[..offset].matches('\n').count() + 1;
        let shown = |offset: usize| {
            format!(
                "{}:{}",
                path.strip_prefix(src.parent().unwrap()).unwrap().display(),
                line(offset)
            )
        };
        let mut add = |to: &str, offset: usize| {
            if to != from {
                edges
                    .entry((from.clone(), to.to_string()))
                    .or_default()
                    .push(shown(offset));
            }
        };
        for (first, offset) in crate_paths(code) {
            if modules.contains(&first) {
                add(&first, offset);
            } else if let Some(m) = macros.get(&first) {
                add(m, offset);
            }
        }
        for (name, m) in &macros {
            for offset in macro_uses(code, name) {
                add(m, offset);
            }
        }
    }
    for at in edges.values_mut() {
        at.dedup();
    }
    (modules, edges)
}

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(modules: &BTreeSet<String>, edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    struct T<'a> {
        next: BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.next.get(v).cloned().unwrap_or_default() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        next: BTreeMap::new(),
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for (a, b) in edges {
        t.next.entry(a.as_str()).or_default().push(b.as_str());
    }
    for m in modules {
        if !t.index.contains_key(m.as_str()) {
            visit(&mut t, m.as_str());
        }
    }
    t.out
}

fn describe(edges: &Edges, key: &(String, String)) -> String {
    let at = &edges[key];
    let more = if at.len() > 3 {
        format!(" and {} more", at.len() - 3)
    } else {
        String::new()
    };
    format!(
        "{} -> {} ({}{more})",
        key.0,
        key.1,
        at.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
    )
}

#[test]
fn layers_point_down_and_modules_form_no_cycle() {
    let (modules, edges) = graph();
    let mut problems = Vec::new();

    // Every module has a layer, and every layer entry is a module: the map stays exact.
    for m in &modules {
        if rank(m).is_none() {
            problems.push(format!("module {m} is in no layer of LAYERS"));
        }
    }
    for (_, ms) in LAYERS {
        for m in *ms {
            if !modules.contains(*m) {
                problems.push(format!("LAYERS names {m}, which is not a module of src/"));
            }
        }
    }

    let upward = |k: &(String, String)| match (rank(&k.0), rank(&k.1)) {
        (Some(a), Some(b)) => b > a,
        _ => false,
    };
    for k in edges.keys().filter(|k| upward(k)) {
        problems.push(format!("upward import: {}", describe(&edges, k)));
    }
    let all: BTreeSet<(String, String)> = edges.keys().cloned().collect();
    for scc in cycles(&modules, &all) {
        let inside: Vec<String> = all
            .iter()
            .filter(|(a, b)| scc.contains(a) && scc.contains(b))
            .map(|k| describe(&edges, k))
            .collect();
        problems.push(format!(
            "import cycle among {}:\n      {}",
            scc.join(", "),
            inside.join("\n      ")
        ));
    }
    assert!(
        problems.is_empty(),
        "the module graph breaks the layers:\n  {}",
        problems.join("\n  ")
    );
}

/// The reader sees what it must: a graph that found nothing would pass the test above.
#[test]
fn the_graph_is_read_from_the_source() {
    let (modules, edges) = graph();
    assert!(modules.len() >= 20, "{modules:?}");
    for (a, b) in [
        ("decap", "wire"),
        ("extcap", "config"),
        ("extcap", "log"),
        ("aws", "civil"),
    ] {
        assert!(
            edges.contains_key(&(a.to_string(), b.to_string())),
            "{a} -> {b} missing from {:?}",
            edges.keys().collect::<Vec<_>>()
        );
    }
    // extcap is imported by nothing.
    let into_extcap: Vec<&(String, String)> = edges.keys().filter(|(_, b)| b == "extcap").collect();
    assert!(into_extcap.is_empty(), "{into_extcap:?}");
}

#[test]
fn the_scanner_reads_paths_groups_and_macros_and_skips_comments_and_strings() {
    let code = code_only(
        r##"
use crate::{a::{b, c}, d, self};
use crate::e::F;
// use crate::commented;
/* use crate::blocked; /* nested */ still */
let s = "crate::in_string"; let r = r#"crate::in_raw"#; let c = '"';
fn f<'a>(x: &'a str) { $crate::g::h(); pub(crate) fn k() {} crate::i!(); }
"##,
    );
    let firsts: Vec<String> = crate_paths(&code).into_iter().map(|(s, _)| s).collect();
    assert_eq!(firsts, ["a", "d", "self", "e", "g", "i"]);
    let macros = exported_macros("#[macro_export]\nmacro_rules! log_x { () => {} }");
    assert_eq!(macros, ["log_x"]);
    assert_eq!(
        macro_uses("log_x!(1); crate::log_x!(2); my_log_x!(3)", "log_x").len(),
        1
    );
}

/// Where `code` names an operating system: a `cfg` that tests `unix`, `windows` or
/// `target_os`, or a path into `std::os::` or `libc::`. Returns each with its line.
fn os_mentions(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    for needle in ["std::os::", "libc::"] {
        for (at, _) in code.match_indices(needle) {
            if at == 0 || !is_ident(code[..at].chars().next_back().unwrap()) {
                found.push((line_of(at), needle.to_string()));
            }
        }
    }
    for opener in ["cfg(", "cfg!(", "cfg_attr("] {
        for (at, _) in code.match_indices(opener) {
            if at > 0 && is_ident(code[..at].chars().next_back().unwrap()) {
                continue;
            }
            let body = &code[at + opener.len()..];
            let mut depth = 1;
            let end = body
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(body.len(), |(i, _)| i);
            let words = body[..end].split(|c: char| !is_ident(c));
            if let Some(w) = words
                .into_iter()
                .find(|w| ["unix", "windows", "target_os", "target_family"].contains(w))
            {
                found.push((line_of(at), format!("{opener}{w}…)")));
            }
        }
    }
    found.sort();
    found
}

/// What differs by OS lives in `src/sys/` (issue 18); no other file names an OS.
#[test]
fn only_sys_names_an_operating_system() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut named = Vec::new();
    for f in &files {
        if f.starts_with(src.join("sys")) {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(f).unwrap());
        for (line, what) in os_mentions(&code) {
            named.push(format!(
                "{}:{line}: {what}",
                f.strip_prefix(&src).unwrap().display()
            ));
        }
    }
    assert!(
        files.len() > 50,
        "{} files read from {}",
        files.len(),
        src.display()
    );
    assert!(
        named.is_empty(),
        "OS named outside src/sys:\n{}",
        named.join("\n")
    );
}

#[test]
fn the_os_scanner_sees_cfg_attributes_macros_and_os_paths() {
    let code = code_only(
        r#"
#[cfg(unix)]
fn a() {}
#[cfg(all(test, not(target_os = "linux")))]
fn b() { if cfg!(windows) {} use std::os::fd::AsFd; libc::close(3); }
#[cfg_attr(unix, allow(dead_code))]
#[cfg(feature = "aws")]
fn c() { let s = "cfg(unix)"; mylibc::x(); } // cfg(windows)
"#,
    );
    let lines: Vec<usize> = os_mentions(&code).into_iter().map(|(l, _)| l).collect();
    assert_eq!(lines, [2, 4, 5, 5, 5, 6]);
}
