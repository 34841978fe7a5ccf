//! Golden tests: one per sentence kind awsvpc renders from extcap-manifest/, against the
//! exact text Wireshark's parser expects (extcap-contract.md §1).

use awsvpc::manifest::{pref_suffix, render_values, ArgValue, Manifest};

#[test]
fn manifest_has_no_problems() {
    let problems = Manifest::load().problems();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn extcap_sentence() {
    let s = Manifest::load().render_interfaces("9.9.9", "/help.md");
    assert_eq!(
        s.lines().next().unwrap(),
        "extcap {version=9.9.9}{help=/help.md}{display=AWS VPC Traffic Mirroring}"
    );
    assert_eq!(
        s.lines().filter(|l| l.starts_with("extcap ")).count(),
        1,
        "exactly one extcap line, first"
    );
}

#[test]
fn interface_sentence() {
    let s = Manifest::load().render_interfaces("1", "h");
    assert_eq!(
        s.lines().nth(1).unwrap(),
        "interface {value=awsvpc}{control=3}{display=AWS VPC Traffic Mirroring}"
    );
}

#[test]
fn control_sentences() {
    let s = Manifest::load().render_interfaces("1", "h");
    let controls: Vec<&str> = s.lines().filter(|l| l.starts_with("control ")).collect();
    assert_eq!(
        controls[0],
        "control {number=0}{type=button}{role=logger}{display=Log}{tooltip=Show the awsvpc capture log}"
    );
    assert_eq!(
        controls[1],
        "control {number=1}{type=button}{role=help}{display=Help}{tooltip=Open the awsvpc documentation}"
    );
    assert!(
        controls[2].starts_with("control {number=2}{type=button}{role=control}{display=Counters}")
    );
}

#[test]
fn dlt_sentence() {
    assert_eq!(
        Manifest::load().render_dlts(),
        "dlt {number=1}{name=EN10MB}{display=Ethernet (decapsulated VXLAN)}\n"
    );
}

#[test]
fn arg_sentences() {
    let s = Manifest::load().render_config(&|_| Vec::new());
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines.contains(
        &"arg {number=11}{call=--listen-port}{display=Listen port}{type=unsigned}{tooltip=UDP port of the mirrored VXLAN (AWS uses 4789)}{default=4789}{range=1,65535}{group=Collector}"
    ), "{s}");
    assert!(lines.contains(
        &"arg {number=3}{call=--eni}{display=Network interfaces to mirror}{type=multicheck}{tooltip=One or more ENIs (eni-…, comma-separated) of one VPC to mirror}{placeholder=Load ENIs…}{reload=true}{group=AWS}"
    ), "{s}");
    assert!(lines.contains(
        &"arg {number=15}{call=--ssh-key}{display=SSH private key}{type=fileselect}{tooltip=Key file for a host collector; the SSH agent is used when empty (a temporary collector uses a key awsvpc generates)}{mustexist=true}{group=SSH}"
    ), "{s}");
    // required=true is never combined with default= (Wireshark 4.0 bug #18487).
    assert!(!s.contains("required=true"));
}

#[test]
fn value_sentences() {
    let s = Manifest::load().render_config(&|_| Vec::new());
    assert!(s.contains("value {arg=4}{value=ephemeral}{display=Temporary instance, launched and removed by awsvpc}{default=true}\n"));
    assert!(s.contains("value {arg=4}{value=local}{display=This machine (a mirror target or lab box receiving VXLAN)}\n"));
    // Values follow their arg.
    let arg4 = s.find("arg {number=4}").unwrap();
    assert!(s.find("value {arg=4}").unwrap() > arg4);
    // Text from outside cannot break the sentence grammar.
    let v = render_values(
        0,
        &[ArgValue {
            value: "a}{b".into(),
            display: "x} y\nz".into(),
            default: false,
            enabled: true,
        }],
    );
    assert_eq!(v, "value {arg=0}{value=a)(b}{display=x) y z}\n");
}

/// Every argument the product will have, declared now with these exact names, so saved
/// preferences and scripts never break (issue 2).
#[test]
fn every_product_argument_is_declared_with_a_unique_pref() {
    let m = Manifest::load();
    let calls: Vec<&str> = m.args.iter().map(|a| a.call.as_str()).collect();
    for c in [
        "--profile",
        "--region",
        "--vpc",
        "--eni",
        "--collector",
        "--connect",
        "--launch-template",
        "--instance-type",
        "--target-id",
        "--ssh-host",
        "--ssh-port",
        "--ssh-user",
        "--ssh-key",
        "--ssh-known-hosts",
        "--listen-addr",
        "--listen-port",
        "--snaplen",
        "--session-number",
        "--vni",
        "--amazon-dns",
        "--log-level",
        "--log-file",
    ] {
        assert!(calls.contains(&c), "{c} is not declared");
    }
    let mut prefs: Vec<String> = calls.iter().map(|c| pref_suffix(c)).collect();
    prefs.sort();
    let n = prefs.len();
    prefs.dedup();
    assert_eq!(prefs.len(), n, "two calls map to one pref name");
    let groups: std::collections::BTreeSet<&str> =
        m.args.iter().map(|a| a.group.as_str()).collect();
    assert!(
        groups.len() >= 4,
        "arguments are grouped in tabs: {groups:?}"
    );
}
