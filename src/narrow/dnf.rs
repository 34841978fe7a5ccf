//! Disjunctive normal form: the parsed expression as a bounded list of conjunctions
//! (`Term`), each of which becomes one rule per address family.

use super::parse::{Atom, Expr};
use super::rule::{range_covers, Cidr, Rule};
use super::*;

/// A conjunction of atoms: the packets it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Term {
    fams: u8,
    proto: Option<(u8, bool)>,
    src: Option<Cidr>,
    dst: Option<Cidr>,
    sport: Option<(u16, u16)>,
    dport: Option<(u16, u16)>,
}

impl Term {
    pub(super) const ANY: Term = Term {
        fams: V4 | V6,
        proto: None,
        src: None,
        dst: None,
        sport: None,
        dport: None,
    };

    fn of(a: Atom) -> Term {
        let mut t = Term::ANY;
        match a {
            Atom::Family(f) => t.fams = f,
            Atom::Proto { num, direct, fams } => {
                t.fams = fams;
                t.proto = Some((num, direct));
            }
            Atom::Src(c) => {
                t.fams = c.fam();
                t.src = Some(c);
            }
            Atom::Dst(c) => {
                t.fams = c.fam();
                t.dst = Some(c);
            }
            Atom::SrcPorts(a, b) => t.sport = Some((a, b)),
            Atom::DstPorts(a, b) => t.dport = Some((a, b)),
        }
        t
    }

    /// Both at once; `None` when no packet can be both.
    fn and(&self, o: &Term) -> Option<Term> {
        let mut fams = self.fams & o.fams;
        let proto = match (self.proto, o.proto) {
            (None, p) | (p, None) => p,
            (Some((p, dp)), Some((q, dq))) if p == q => Some((p, dp || dq)),
            // IPv4 has one protocol field, but libpcap's IPv6 `ip6 proto 44` and `tcp`
            // both match a fragment header followed by TCP.
            (Some((IPV6_FRAGMENT, false)), Some((r, false)))
            | (Some((r, false)), Some((IPV6_FRAGMENT, false))) => {
                fams &= V6;
                Some((r, false))
            }
            _ => return None,
        };
        let src = Cidr::intersect(self.src, o.src)?;
        let dst = Cidr::intersect(self.dst, o.dst)?;
        for c in src.iter().chain(dst.iter()) {
            fams &= c.fam();
        }
        let sport = intersect_range(self.sport, o.sport)?;
        let dport = intersect_range(self.dport, o.dport)?;
        (fams != 0).then_some(Term {
            fams,
            proto,
            src,
            dst,
            sport,
            dport,
        })
    }

    /// Every packet `o` describes, `self` describes too.
    fn covers(&self, o: &Term) -> bool {
        let proto = match (self.proto, o.proto) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((p, dp)), Some((q, dq))) => p == q && (!dp || dq),
        };
        let net = |a: Option<Cidr>, b: Option<Cidr>| match (a, b) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a.covers(&b),
        };
        o.fams & !self.fams == 0
            && proto
            && net(self.src, o.src)
            && net(self.dst, o.dst)
            && range_covers(self.sport, o.sport)
            && range_covers(self.dport, o.dport)
    }

    pub(super) fn push_rules(&self, out: &mut Vec<Rule>) {
        for (fam, v6) in [(V4, false), (V6, true)] {
            if self.fams & fam == 0 {
                continue;
            }
            let protos = match self.proto {
                None => vec![None],
                Some((p, direct)) if !v6 || direct => vec![Some(p)],
                Some((p, _)) if IPV6_EXTENSIONS.contains(&p) => vec![None],
                // Whether AWS reads the fixed header's next header (44 for a fragment) or
                // the protocol after it is undocumented: a rule for each reading.
                Some((p, _)) => vec![Some(p), Some(IPV6_FRAGMENT)],
            };
            for protocol in protos {
                let ports = matches!(protocol, Some(6 | 17));
                out.push(Rule {
                    action: Action::Accept,
                    protocol,
                    source: self.src.unwrap_or(Cidr::any(v6)),
                    destination: self.dst.unwrap_or(Cidr::any(v6)),
                    source_ports: self.sport.filter(|_| ports),
                    destination_ports: self.dport.filter(|_| ports),
                    description: String::new(),
                });
            }
        }
    }
}

fn intersect_range(a: Option<(u16, u16)>, b: Option<(u16, u16)>) -> Option<Option<(u16, u16)>> {
    match (a, b) {
        (None, x) | (x, None) => Some(x),
        (Some(a), Some(b)) => {
            let r = (a.0.max(b.0), a.1.min(b.1));
            (r.0 <= r.1).then_some(Some(r))
        }
    }
}

/// Sorted, without duplicates or terms another one covers.
pub(super) fn prune(terms: &mut Vec<Term>) {
    terms.sort();
    terms.dedup();
    let mut keep = vec![true; terms.len()];
    for i in 0..terms.len() {
        for j in 0..terms.len() {
            if i != j && keep[j] && terms[j].covers(&terms[i]) {
                keep[i] = false;
                break;
            }
        }
    }
    let mut k = keep.iter();
    terms.retain(|_| *k.next().unwrap_or(&true));
}

/// `None` when the expansion outgrows its bounds.
pub(super) fn dnf(e: &Expr, depth: usize) -> Option<Vec<Term>> {
    if depth > MAX_TOKENS {
        return None;
    }
    let mut out = match e {
        Expr::Any => vec![Term::ANY],
        Expr::Atom(a) => vec![Term::of(*a)],
        Expr::Or(v) => {
            let mut out = Vec::new();
            for x in v {
                out.extend(dnf(x, depth + 1)?);
                if out.len() > MAX_PRODUCT {
                    return None;
                }
            }
            out
        }
        Expr::And(v) => {
            let mut acc = vec![Term::ANY];
            for x in v {
                let rhs = dnf(x, depth + 1)?;
                if acc.len() * rhs.len() > MAX_PRODUCT {
                    return None;
                }
                acc = acc
                    .iter()
                    .flat_map(|a| rhs.iter().filter_map(move |b| a.and(b)))
                    .collect();
                prune(&mut acc);
                if acc.len() > MAX_TERMS {
                    return None;
                }
            }
            acc
        }
    };
    prune(&mut out);
    (out.len() <= MAX_TERMS).then_some(out)
}
