//! Narrowing: the capture filter translated into traffic-mirror filter rules, so that AWS
//! mirrors (and bills, and carries to the collector) a superset of what the filter keeps
//! rather than everything.
//!
//! libpcap still decides exactly on the collector (`filter`); the rules only have to be
//! conservative: every packet the filter accepts must match an accept rule. The part of
//! libpcap's syntax that rules can express (addresses, IP protocols, TCP/UDP ports) is
//! parsed; anything else, negations included, reads as "any packet". The expression is
//! expanded into a disjunction of conjunctions, each becomes IPv4 and/or IPv6 rules, and
//! rules that do not fit the quota are widened (ports, then addresses, then protocols).
//!
//! The same rules serve ingress and egress: AWS matches a rule's source and destination
//! against the packet's own address fields in both directions, as libpcap does.
//!
//! libpcap semantics the translation follows (checked against `tcpdump -d`, libpcap 1.10):
//! - `and` and `or` have equal precedence and associate left to right.
//! - `port`/`portrange` without `tcp`/`udp` also match SCTP, whose ports rules cannot carry.
//! - For IPv6, `tcp`, `udp`, `icmp6` and `ip6 proto N` also match when the first next header
//!   is a fragment header followed by N; port matches require the header directly.
//! - `tcp[…]`, `udp[…]`, `icmp[…]` and `ip[…]` loads exist for IPv4 only.
//!
//! The parts, in the order a filter goes through them: `parse` (libpcap's syntax, as far as
//! rules can express it), `dnf` (a disjunction of conjunctions), `rule` (the rule model),
//! `widen` (simplification and widening into the quota).

mod dnf;
mod parse;
mod rule;
mod widen;

pub use rule::{Action, Cidr, Rule};

use dnf::Term;
use parse::{tokenize, Parser, K};

/// What the capture filter narrows to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowing {
    /// Accept rules, in no particular order; the same list serves ingress and egress.
    pub rules: Vec<Rule>,
    /// What fell back to "mirror everything" and why, one sentence each, for the log.
    pub notes: Vec<String>,
    /// The rules accept every IPv4 and IPv6 packet: nothing was narrowed.
    pub accept_all: bool,
}

/// Fewer free rule slots than address families the filter needs: no superset fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the capture filter needs at least {needed} traffic-mirror rule(s) per direction (one per address family) but only {budget} are free")]
pub struct BudgetTooSmall {
    pub needed: usize,
    pub budget: usize,
}

/// Longer filters are not narrowed; it bounds the parser's recursion and the expansion.
const MAX_TOKENS: usize = 400;
const MAX_DEPTH: usize = 48;
const MAX_TERMS: usize = 256;
const MAX_PRODUCT: usize = 1024;
/// Above this many rules, widen coarsely before the pairwise search (which is cubic).
const MAX_PAIRWISE: usize = 32;
const MAX_NOTES: usize = 6;

const V4: u8 = 1;
const V6: u8 = 2;
/// IPv6 extension headers: a reader that looks past them sees another protocol, so a rule
/// naming one of these numbers is not dependable for IPv6.
const IPV6_EXTENSIONS: [u8; 8] = [0, 43, 44, 51, 60, 135, 139, 140];
const IPV6_FRAGMENT: u8 = 44;

/// Translates `filter` into at most `budget_per_direction` accept rules that match every
/// IPv4/IPv6 packet the filter accepts. Never panics; work is bounded whatever the input.
pub fn narrow(
    filter: Option<&str>,
    budget_per_direction: usize,
) -> Result<Narrowing, BudgetTooSmall> {
    let mut notes = Notes::default();
    let terms = match filter.map(str::trim) {
        None | Some("") => vec![Term::ANY],
        Some(f) => terms_of(f, &mut notes),
    };
    let mut rules = Vec::new();
    for t in &terms {
        t.push_rules(&mut rules);
    }
    widen::simplify(&mut rules);
    if rules.is_empty() {
        notes.push("The capture filter matches no IPv4 or IPv6 packet: nothing is mirrored.");
    }
    widen::widen(&mut rules, budget_per_direction, &mut notes)?;
    rules.sort_by_key(Rule::sort_key);
    let accept_all = [false, true]
        .iter()
        .all(|v6| rules.iter().any(|r| r.is_ipv6() == *v6 && r.is_universal()));
    for r in &mut rules {
        if r.is_universal() {
            r.description = Rule::accept_all(r.is_ipv6()).description;
        } else {
            r.description = "awsvpc: narrowed from the capture filter".into();
        }
    }
    Ok(Narrowing {
        rules,
        notes: notes.finish(),
        accept_all,
    })
}

#[derive(Default)]
struct Notes {
    list: Vec<String>,
    dropped: usize,
}

impl Notes {
    fn push(&mut self, s: impl Into<String>) {
        let s = s.into();
        if self.list.contains(&s) {
            return;
        }
        if self.list.len() < MAX_NOTES {
            self.list.push(s);
        } else {
            self.dropped += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.list
                .push(format!("{} more parts are mirrored in full.", self.dropped));
        }
        self.list
    }
}

/// At most 60 characters of filter text, for notes.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn terms_of(filter: &str, notes: &mut Notes) -> Vec<Term> {
    let toks = tokenize(filter);
    if toks.len() > MAX_TOKENS {
        notes.push(format!(
            "The capture filter is too long to narrow ({} tokens): everything is mirrored.",
            toks.len()
        ));
        return vec![Term::ANY];
    }
    // These make libpcap read every later field at a shifted offset, including the
    // primitives before them in the text (libpcap's compiler state is global).
    if let Some(t) = toks
        .iter()
        .find(|t| t.kind == K::Word && matches!(t.text, "vlan" | "mpls" | "pppoes" | "geneve"))
    {
        notes.push(format!(
            "`{}` shifts where libpcap reads every other field: the filter is not narrowed.",
            t.text
        ));
        return vec![Term::ANY];
    }
    let mut p = Parser {
        toks,
        pos: 0,
        last: None,
        depth: 0,
        notes,
    };
    let parsed = p.expr().and_then(|e| match p.toks.get(p.pos) {
        None => Ok(e),
        Some(t) => Err(format!("unexpected `{}`", t.text)),
    });
    let expr = match parsed {
        Ok(e) => e,
        Err(why) => {
            // Notes on parts no longer matter: nothing is narrowed.
            p.notes.list.clear();
            p.notes.push(format!(
                "The capture filter could not be narrowed ({}): everything is mirrored.",
                excerpt(&why)
            ));
            return vec![Term::ANY];
        }
    };
    match dnf::dnf(&expr, 0) {
        Some(t) => t,
        None => {
            notes.list.clear();
            notes.push(
                "The capture filter has too many alternatives to narrow: everything is mirrored.",
            );
            vec![Term::ANY]
        }
    }
}

#[cfg(test)]
#[path = "../../tests/oracle/aws_rules.rs"]
mod aws_rules;

#[cfg(test)]
mod tests {
    use super::aws_rules::aws_mirrors;
    use super::rule::*;
    use super::*;

    fn ok(f: &str, budget: usize) -> Narrowing {
        narrow(Some(f), budget).unwrap_or_else(|e| panic!("{f}: {e}"))
    }

    fn shown(n: &Narrowing) -> Vec<String> {
        n.rules.iter().map(Rule::to_string).collect()
    }

    fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(l4);
        f
    }

    fn v6(next: u8, last: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 0, next, 64]);
        let mut a = [0u8; 16];
        a[0] = 0x20;
        a[1] = 0x01;
        a[15] = 1;
        f.extend_from_slice(&a);
        a[15] = last;
        f.extend_from_slice(&a);
        f.extend_from_slice(l4);
        f
    }

    const TCP_80_TO_443: [u8; 4] = [0, 80, 1, 187];

    #[test]
    fn ports_become_tcp_and_udp_rules_per_family() {
        let n = ok("tcp port 80", 10);
        assert_eq!(
            shown(&n),
            [
                "accept tcp from 0.0.0.0/0 to 0.0.0.0/0 port 80",
                "accept tcp from 0.0.0.0/0 port 80 to 0.0.0.0/0",
                "accept tcp from ::/0 to ::/0 port 80",
                "accept tcp from ::/0 port 80 to ::/0",
            ]
        );
        assert!(n.notes.is_empty() && !n.accept_all, "{:?}", n.notes);
        // Like libpcap, a bare `port` also means UDP and SCTP (whose ports rules cannot hold).
        let n = ok("port 53", 10);
        assert_eq!(n.rules.len(), 10, "{:#?}", shown(&n));
        assert!(n
            .rules
            .iter()
            .any(|r| r.protocol == Some(132) && !r.has_ports()));
    }

    #[test]
    fn hosts_nets_and_inherited_qualifiers() {
        let n = ok("host 10.0.0.1 or 10.0.0.2", 10);
        assert_eq!(n.rules.len(), 4);
        assert!(n.rules.iter().all(|r| !r.is_ipv6() && r.protocol.is_none()));
        let n = ok(
            "src net 10.0.0.0 mask 255.0.255.0 and dst host 2001:db8::1",
            10,
        );
        assert!(n.rules.is_empty(), "an IPv4 source and an IPv6 destination");
        assert_eq!(
            shown(&ok("src net 10.0.0.0 mask 255.0.255.0", 10)),
            ["accept all from 10.0.0.0/8 to 0.0.0.0/0"]
        );
        assert_eq!(
            shown(&ok("dst host 10.1", 10)),
            ["accept all from 0.0.0.0/0 to 10.1.0.0/16"]
        );
        assert_eq!(
            // (ip6 src net … and udp dst port 53) or udp dst port 5353
            shown(&ok(
                "ip6 src net 2001:db8::/32 and udp dst port 53 or 5353",
                10
            )),
            [
                "accept udp from 0.0.0.0/0 to 0.0.0.0/0 port 5353",
                "accept udp from ::/0 to ::/0 port 5353",
                "accept udp from 2001:db8::/32 to ::/0 port 53",
            ]
        );
        assert_eq!(
            shown(&ok(
                "host (10.0.0.1 or 10.0.0.3) and tcp portrange 1000-990",
                10
            ))
            .len(),
            8
        );
        assert_eq!(
            shown(&ok("src 192.0.2.1 and ip proto \\udp", 10)),
            ["accept udp from 192.0.2.1/32 to 0.0.0.0/0"]
        );
    }

    #[test]
    fn and_or_have_equal_precedence_left_to_right() {
        // (host a or host b) and tcp, as libpcap reads it.
        let n = ok("host 10.0.0.1 or host 10.0.0.2 and tcp", 10);
        assert!(
            n.rules.iter().all(|r| r.protocol == Some(6)),
            "{:?}",
            shown(&n)
        );
    }

    #[test]
    fn ipv6_protocols_cover_fragment_headers() {
        assert_eq!(
            shown(&ok("icmp6", 10)),
            [
                "accept proto 44 from ::/0 to ::/0",
                "accept icmp6 from ::/0 to ::/0"
            ]
        );
        assert_eq!(
            shown(&ok("ip6 proto 0", 10)),
            ["accept all from ::/0 to ::/0"]
        );
        // libpcap: a fragment header (44) followed by TCP.
        assert_eq!(
            shown(&ok("ip6 proto 44 and tcp", 10)),
            [
                "accept tcp from ::/0 to ::/0",
                "accept proto 44 from ::/0 to ::/0"
            ]
        );
        assert!(ok("tcp and udp", 10).rules.is_empty());
    }

    #[test]
    fn unknown_parts_and_negations_mirror_everything_and_say_so() {
        for f in [
            "not port 22",
            "greater 100",
            "ether host 02:00:00:00:00:01",
            "arp",
        ] {
            let n = ok(f, 10);
            assert!(n.accept_all, "{f}");
            assert_eq!(n.rules.len(), 2, "{f}");
            assert!(
                n.notes.iter().any(|s| s.contains('`')),
                "{f}: {:?}",
                n.notes
            );
        }
        let n = ok("vlan and host 10.0.0.1", 10);
        assert!(n.accept_all && n.notes[0].contains("vlan"), "{:?}", n.notes);
        let n = ok("tcp and not port 22", 10);
        assert_eq!(n.rules.len(), 3, "tcp stays: {:?}", shown(&n));
        // A load narrows to its protocol, IPv4 only.
        assert_eq!(
            shown(&ok("tcp[tcpflags] & tcp-syn != 0", 10)),
            ["accept tcp from 0.0.0.0/0 to 0.0.0.0/0"]
        );
        assert!(ok("", 10).accept_all && narrow(None, 2).unwrap().accept_all);
        assert!(ok("host 10.0.0.1 port 80", 10).accept_all, "syntax error");
    }

    #[test]
    fn widening_fits_the_budget_and_stays_a_superset() {
        let frames = [
            v4([10, 0, 0, 9], [192, 0, 2, 1], 17, &[0, 53, 0x30, 0x39]),
            v4([10, 0, 0, 9], [192, 0, 2, 1], 6, &[0x30, 0x39, 0, 53]),
            v4([10, 0, 0, 9], [192, 0, 2, 1], 132, &[0x30, 0x39, 0, 53]),
            v6(17, 2, &[0, 53, 0, 53]),
        ];
        for budget in [10, 8, 6, 4, 2] {
            let n = ok("port 53", budget);
            assert!(n.rules.len() <= budget);
            assert_eq!(n.notes.is_empty(), budget == 10, "{budget}: {:?}", n.notes);
            for f in &frames {
                assert!(aws_mirrors(&n.rules, f), "{budget}: {:?}", shown(&n));
            }
        }
        assert_eq!(
            narrow(Some("tcp"), 1),
            Err(BudgetTooSmall {
                needed: 2,
                budget: 1
            })
        );
        assert_eq!(
            shown(&ok("host 10.0.0.1", 1)),
            ["accept all from 0.0.0.0/0 to 0.0.0.0/0"]
        );
        assert_eq!(
            narrow(Some("icmp and udp"), 0).map(|n| n.rules.len()),
            Ok(0)
        );
    }

    #[test]
    fn exact_unions_merge() {
        assert_eq!(
            shown(&ok(
                "tcp dst portrange 1-100 or tcp dst portrange 101-200",
                10
            )),
            [
                "accept tcp from 0.0.0.0/0 to 0.0.0.0/0 ports 1-200",
                "accept tcp from ::/0 to ::/0 ports 1-200",
            ]
        );
        assert_eq!(
            shown(&ok("src net 10.0.0.0/25 or src net 10.0.0.128/25", 10)),
            ["accept all from 10.0.0.0/24 to 0.0.0.0/0"]
        );
    }

    #[test]
    fn evaluator_follows_rule_order_and_fragments() {
        let syn = v4([10, 0, 0, 9], [192, 0, 2, 1], 6, &TCP_80_TO_443);
        let mut reject = Rule::accept_all(false);
        reject.action = Action::Reject;
        reject.destination = Cidr::new("192.0.2.0".parse().unwrap(), 24);
        let all = Rule::accept_all(false);
        assert!(aws_mirrors(std::slice::from_ref(&all), &syn));
        assert!(!aws_mirrors(&[reject.clone(), all.clone()], &syn));
        assert!(aws_mirrors(&[all.clone(), reject], &syn));
        let mut port = all.clone();
        port.protocol = Some(6);
        port.destination_ports = Some((443, 443));
        assert!(aws_mirrors(std::slice::from_ref(&port), &syn));
        let mut later = syn.clone();
        later[20] = 0x01; // fragment offset 256 bytes: no TCP header
        assert!(!aws_mirrors(std::slice::from_ref(&port), &later));
        // Cut before the ports: only a rule without ports decides.
        assert!(!aws_mirrors(std::slice::from_ref(&port), &syn[..36]));
        assert!(aws_mirrors(&[all], &syn[..20]));
        // ARP carries no IP.
        let mut arp = syn.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!aws_mirrors(&[Rule::accept_all(false)], &arp));
        // IPv6 behind a fragment header: both readings need a rule.
        let mut frag = vec![6, 0, 0, 0, 0, 0, 0, 1];
        frag.extend_from_slice(&TCP_80_TO_443);
        let f = v6(44, 2, &frag);
        let mut tcp6 = Rule::accept_all(true);
        tcp6.protocol = Some(6);
        assert!(!aws_mirrors(std::slice::from_ref(&tcp6), &f));
        let mut frag6 = tcp6.clone();
        frag6.protocol = Some(44);
        assert!(aws_mirrors(&[tcp6, frag6], &f));
    }

    #[test]
    fn hostile_input_neither_panics_nor_explodes() {
        let deep = format!("{}tcp{}", "(".repeat(5000), ")".repeat(5000));
        let long = ["port 1"; 300].join(" or ");
        let wide = ["(port 1 or port 2 or port 3)"; 12].join(" and ");
        for f in [
            deep.as_str(),
            &long,
            &wide,
            "((",
            ")",
            "not",
            "host",
            "src or",
            "net 1.2.3.4/99",
            "\u{0}é ! && ||",
            "port 99999",
            "proto \\",
            "host ::1/200",
            "net 4294967295",
            "net 0x",
            "portrange -",
        ] {
            for budget in [0, 1, 2, 10] {
                if let Ok(n) = narrow(Some(f), budget) {
                    assert!(n.rules.len() <= budget, "{f}");
                    assert!(n.notes.len() <= MAX_NOTES + 1);
                }
            }
        }
    }
}
