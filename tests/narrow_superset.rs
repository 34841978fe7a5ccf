//! The superset property of narrowing: for generated filters and frames, every frame
//! libpcap's compiled filter accepts is mirrored by AWS under the narrowed rules, read by
//! AWS's documented rule semantics (`tests/oracle/aws_rules.rs`), for every rule budget.
//!
//! Frames are IPv4/IPv6 only: AWS mirrors no other traffic, whatever the rules.
//! PROPTEST_CASES sets the number of filters (default 3000).

use awsvpc::filter::CaptureFilter;
#[path = "oracle/aws_rules.rs"]
mod aws_rules;
use aws_rules::aws_mirrors;
use awsvpc::narrow::{narrow, Action, Cidr, Rule};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::Cell;

const V4: [[u8; 4]; 6] = [
    [10, 0, 0, 1],
    [10, 0, 0, 2],
    [10, 0, 1, 5],
    [192, 0, 2, 1],
    [192, 0, 2, 2],
    [172, 31, 0, 2],
];
const V4_TEXT: [&str; 6] = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.1.5",
    "192.0.2.1",
    "192.0.2.2",
    "172.31.0.2",
];
const V6_TEXT: [&str; 4] = ["2001:db8::1", "2001:db8::2", "2001:db8:1::5", "fe80::1"];
const NETS: [&str; 14] = [
    "10.0.0.0/8",
    "10.0.0.0/24",
    "10.0.1.0/24",
    "192.0.2.0/24",
    "10.0.0.0/31",
    "10.0",
    "10",
    "10.0.0.0 mask 255.255.0.0",
    "10.0.0.0 mask 255.0.255.0",
    "172.16.0.0/12",
    "2001:db8::/32",
    "2001:db8::/64",
    "fe80::/10",
    "2001:db8:1::/48",
];
const PORTS: [u16; 8] = [22, 53, 80, 443, 8080, 0, 65535, 1024];
const RANGES: [&str; 6] = ["1-1023", "50-90", "8000-9000", "443-80", "53", "0-65535"];
/// Primitives rules cannot express; `vlan` and `mpls` also shift libpcap's offsets.
const UNKNOWN: [&str; 22] = [
    "vlan",
    "vlan 5",
    "mpls",
    "greater 100",
    "less 80",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[13] & 2 = 0",
    "udp[0:2] = 53",
    "ip[6] & 0x20 != 0",
    "ip[6:2] & 0x1fff != 0",
    "ip6[6] = 17",
    "icmp[icmptype] == icmp-echo",
    "icmp6[0] = 128",
    "ether host 02:00:c0:00:02:01",
    "ether broadcast",
    "arp",
    "ip multicast",
    "ip6 protochain 6",
    "len <= 100",
    "ether proto 0x86dd",
    "ip broadcast",
];

fn addr() -> impl Strategy<Value = &'static str> {
    prop_oneof![select(V4_TEXT.to_vec()), select(V6_TEXT.to_vec())]
}

fn dir() -> impl Strategy<Value = &'static str> {
    select(vec!["", "src ", "dst ", "src or dst ", "src and dst "])
}

fn port_proto() -> impl Strategy<Value = &'static str> {
    select(vec!["", "tcp ", "udp ", "sctp "])
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        (select(vec!["", "ip ", "ip6 "]), dir(), addr())
            .prop_map(|(p, d, a)| format!("{p}{d}host {a}")),
        (select(vec!["src ", "dst ", "src or dst "]), addr()).prop_map(|(d, a)| format!("{d}{a}")),
        (dir(), select(NETS.to_vec())).prop_map(|(d, n)| format!("{d}net {n}")),
        (port_proto(), dir(), select(PORTS.to_vec()))
            .prop_map(|(p, d, n)| format!("{p}{d}port {n}")),
        (port_proto(), dir(), select(RANGES.to_vec()))
            .prop_map(|(p, d, r)| format!("{p}{d}portrange {r}")),
        select(vec![
            "tcp", "udp", "icmp", "icmp6", "ip", "ip6", "sctp", "igmp"
        ])
        .prop_map(String::from),
        (
            select(vec!["ip proto", "ip6 proto", "proto"]),
            select(vec![
                "0", "1", "6", "17", "44", "47", "58", "132", "\\tcp", "\\udp"
            ]),
        )
            .prop_map(|(q, n)| format!("{q} {n}")),
        // Ids that inherit the qualifiers before them.
        (addr(), addr()).prop_map(|(a, b)| format!("host {a} or {b}")),
        (addr(), addr()).prop_map(|(a, b)| format!("src host {a} and not {b}")),
        (addr(), addr()).prop_map(|(a, b)| format!("host ({a} or {b})")),
        (select(PORTS.to_vec()), select(PORTS.to_vec()))
            .prop_map(|(a, b)| format!("port {a} or {b}")),
        (select(PORTS.to_vec()), select(PORTS.to_vec()))
            .prop_map(|(a, b)| format!("tcp dst port {a} or {b}")),
        select(vec![
            "ip proto 6 or 17",
            "ip6 proto 58 or 44",
            "net 10.0.0.0/24 or 192.0.2.0/24"
        ])
        .prop_map(String::from),
        select(UNKNOWN.to_vec()).prop_map(String::from),
    ]
}

fn filter() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                select(vec![" and ", " or ", " && ", " || "]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a}{op}{b}")),
            (select(vec!["not ", "! "]), inner.clone()).prop_map(|(n, a)| format!("{n}{a}")),
            inner.prop_map(|a| format!("({a})")),
        ]
    })
}

#[derive(Debug, Clone, Copy)]
enum L4 {
    Tcp,
    Udp,
    Icmp,
    Sctp,
    Other(u8),
}

#[derive(Debug, Clone, Copy)]
enum Frag {
    None,
    First,
    Later,
}

#[derive(Debug, Clone)]
struct FrameSpec {
    vlan_tags: usize,
    v6: bool,
    src: usize,
    dst: usize,
    l4: L4,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    frag: Frag,
    hop_by_hop: bool,
    payload: usize,
    cut: Option<usize>,
}

fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    let l4 = prop_oneof![
        4 => Just(L4::Tcp),
        4 => Just(L4::Udp),
        2 => Just(L4::Icmp),
        1 => Just(L4::Sctp),
        1 => select(vec![2u8, 47, 50, 89]).prop_map(L4::Other),
    ];
    let frag = prop_oneof![6 => Just(Frag::None), 1 => Just(Frag::First), 1 => Just(Frag::Later)];
    (
        (
            prop_oneof![8 => Just(0usize), 1 => Just(1), 1 => Just(2)],
            any::<bool>(),
            0..6usize,
            0..6usize,
            l4,
        ),
        (
            select(PORTS.to_vec()),
            prop_oneof![select(PORTS.to_vec()), 1u16..2000],
            any::<u8>(),
            frag,
            prop::bool::weighted(0.15),
            0..120usize,
            prop::option::weighted(0.15, 14..90usize),
        ),
    )
        .prop_map(
            |(
                (vlan_tags, v6, src, dst, l4),
                (sport, dport, tcp_flags, frag, hbh, payload, cut),
            )| {
                FrameSpec {
                    vlan_tags,
                    v6,
                    src,
                    dst,
                    l4,
                    sport,
                    dport,
                    tcp_flags,
                    frag,
                    hop_by_hop: hbh,
                    payload,
                    cut,
                }
            },
        )
}

fn v6_addr(i: usize) -> [u8; 16] {
    let a: std::net::Ipv6Addr = V6_TEXT[i % V6_TEXT.len()].parse().unwrap();
    a.octets()
}

/// The frame's bytes (cut when the spec says so) and its length on the wire.
fn build(s: &FrameSpec) -> (Vec<u8>, usize) {
    let mut l4 = match s.l4 {
        L4::Tcp => {
            let mut h = Vec::new();
            h.extend_from_slice(&s.sport.to_be_bytes());
            h.extend_from_slice(&s.dport.to_be_bytes());
            h.extend_from_slice(&[
                0,
                0,
                0,
                1,
                0,
                0,
                0,
                0,
                0x50,
                s.tcp_flags,
                0xff,
                0xff,
                0,
                0,
                0,
                0,
            ]);
            h
        }
        L4::Udp | L4::Sctp => {
            let mut h = Vec::new();
            h.extend_from_slice(&s.sport.to_be_bytes());
            h.extend_from_slice(&s.dport.to_be_bytes());
            h.extend_from_slice(&[0, 8, 0, 0]);
            h
        }
        L4::Icmp => vec![if s.v6 { 128 } else { 8 }, 0, 0, 0, 0, 1, 0, 1],
        L4::Other(_) => vec![0; 4],
    };
    l4.extend((0..s.payload).map(|i| i as u8));
    let proto = match s.l4 {
        L4::Tcp => 6,
        L4::Udp => 17,
        L4::Icmp if s.v6 => 58,
        L4::Icmp => 1,
        L4::Sctp => 132,
        L4::Other(p) => p,
    };
    let (ethertype, l3) = if s.v6 {
        let mut next = proto;
        let mut body = l4;
        if !matches!(s.frag, Frag::None) {
            let off: u16 = if matches!(s.frag, Frag::Later) {
                185 << 3
            } else {
                1
            };
            let mut h = vec![next, 0];
            h.extend_from_slice(&off.to_be_bytes());
            h.extend_from_slice(&[0, 0, 0x12, 0x34]);
            h.extend_from_slice(&body);
            body = h;
            next = 44;
        }
        if s.hop_by_hop {
            let mut h = vec![next, 0, 1, 4, 0, 0, 0, 0];
            h.extend_from_slice(&body);
            body = h;
            next = 0;
        }
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&(body.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[next, 64]);
        ip.extend_from_slice(&v6_addr(s.src));
        ip.extend_from_slice(&v6_addr(s.dst));
        ip.extend_from_slice(&body);
        (0x86ddu16, ip)
    } else {
        let frag: u16 = match s.frag {
            Frag::None => 0,
            Frag::First => 0x2000,
            Frag::Later => 185,
        };
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34]);
        ip.extend_from_slice(&frag.to_be_bytes());
        ip.extend_from_slice(&[64, proto, 0, 0]);
        ip.extend_from_slice(&V4[s.src % V4.len()]);
        ip.extend_from_slice(&V4[s.dst % V4.len()]);
        ip.extend_from_slice(&l4);
        (0x0800u16, ip)
    };
    let mut f = vec![2, 0, 0xc0, 0, 2, 2, 2, 0, 0xc0, 0, 2, 1];
    for t in 0..s.vlan_tags {
        let tpid: u16 = if t + 1 < s.vlan_tags { 0x88a8 } else { 0x8100 };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&[0, 5]);
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(&l3);
    let wire = f.len();
    if let Some(c) = s.cut {
        f.truncate(c);
    }
    (f, wire)
}

#[derive(Default)]
struct Tally {
    compiled: Cell<u32>,
    narrowed: Cell<u32>,
    accepted_checks: Cell<u64>,
    narrowed_checks: Cell<u64>,
    excluded: Cell<u64>,
}

fn bump<T: Copy + std::ops::Add<Output = T> + From<u8>>(c: &Cell<T>) {
    c.set(c.get() + T::from(1));
}

#[test]
fn narrowed_rules_mirror_every_frame_the_filter_accepts() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let tally = Tally::default();
    let strategy = (filter(), prop::collection::vec(frame_spec(), 24));
    let result = runner.run(&strategy, |(expr, specs)| {
        // What libpcap rejects never reaches narrowing.
        let Ok(compiled) = CaptureFilter::compile(&expr) else {
            return Ok(());
        };
        bump(&tally.compiled);
        let frames: Vec<(Vec<u8>, usize)> = specs.iter().map(build).collect();
        for budget in [10, 8, 6, 2, 1] {
            let n = match narrow(Some(&expr), budget) {
                Ok(n) => n,
                Err(e) if budget < 2 => {
                    prop_assert_eq!(e.budget, budget);
                    continue;
                }
                Err(e) => return Err(TestCaseError::fail(format!("{expr:?}: {e}"))),
            };
            prop_assert!(
                n.rules.len() <= budget,
                "{:?} budget {}: {:?}",
                expr,
                budget,
                n.rules
            );
            for r in &n.rules {
                prop_assert_eq!(r.action, Action::Accept);
                prop_assert_eq!(r.source.is_ipv4(), r.destination.is_ipv4(), "{}", r);
                let ports = r.source_ports.into_iter().chain(r.destination_ports);
                for (lo, hi) in ports {
                    prop_assert!(lo <= hi && matches!(r.protocol, Some(6 | 17)), "{}", r);
                }
                prop_assert!(!r.description.is_empty() && r.description.len() <= 255);
            }
            if budget == 10 && !n.accept_all {
                bump(&tally.narrowed);
            }
            for (frame, wire) in &frames {
                let mirrored = aws_mirrors(&n.rules, frame);
                if compiled.matches(frame, *wire) {
                    bump(&tally.accepted_checks);
                    if !n.accept_all {
                        bump(&tally.narrowed_checks);
                    }
                    prop_assert!(
                        mirrored,
                        "{:?} (budget {}) accepts {:02x?} but the rules {:#?} do not mirror it",
                        expr,
                        budget,
                        frame,
                        n.rules.iter().map(ToString::to_string).collect::<Vec<_>>()
                    );
                } else if !mirrored {
                    bump(&tally.excluded);
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{cases} filters, {} compiled, {} narrowed at budget 10; {} accepted frames checked ({} under narrowed rules); {} rejected frames not mirrored",
        tally.compiled.get(),
        tally.narrowed.get(),
        tally.accepted_checks.get(),
        tally.narrowed_checks.get(),
        tally.excluded.get()
    );
    // Not vacuous: most filters compile, many narrow, and narrowed rules were exercised.
    assert!(tally.compiled.get() * 2 > cases, "too few filters compiled");
    assert!(
        tally.narrowed.get() * 5 > tally.compiled.get(),
        "too few filters narrowed"
    );
    assert!(tally.narrowed_checks.get() > u64::from(cases));
    assert!(tally.excluded.get() > 0);
}
