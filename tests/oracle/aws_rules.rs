//! An evaluator of AWS's documented traffic-mirror rule semantics, the oracle the narrowing
//! is checked against (tests/narrow_superset.rs, tests/filter_differential.rs, the unit
//! tests of src/narrow, fuzz/fuzz_targets/filter_narrow.rs). It is test code, not product
//! API: each includer brings `Action`, `Cidr` and `Rule` into its own scope, and the file
//! reads frames and address bits itself rather than through the code it checks.

use super::{Action, Cidr, Rule};
use std::net::IpAddr;

/// IPv6 extension headers: a reader that looks past them sees another protocol.
const IPV6_EXTENSIONS: [u8; 8] = [0, 43, 44, 51, 60, 135, 139, 140];
const IPV6_FRAGMENT: u8 = 44;

fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn mask(v6: bool, prefix: u8) -> u128 {
    let all = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    let host = all.checked_shr(u32::from(prefix)).unwrap_or(0);
    all & !host
}

/// The EtherType after up to four VLAN tags and the offset of the L3 header; `None` for a
/// frame cut inside its Ethernet header or tags (or with more tags than a real frame).
fn l3(frame: &[u8]) -> Option<(u16, usize)> {
    if frame.len() < 14 {
        return None;
    }
    let mut off = 12;
    for _ in 0..=4 {
        let ty = be16_at(frame, off)?;
        match ty {
            0x8100 | 0x88a8 | 0x9100 => off += 4,
            _ => return Some((ty, off + 2)),
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tri {
    No,
    Maybe,
    Yes,
}

impl From<bool> for Tri {
    fn from(b: bool) -> Self {
        if b {
            Tri::Yes
        } else {
            Tri::No
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    /// Not TCP/UDP, or a fragment after the first: AWS has no ports to match.
    Absent,
    /// Source and destination port, `None` where the capture stops short of it.
    Present(Option<u16>, Option<u16>),
}

/// An address as far as the capture holds it (libpcap compares a prefix's words only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Partial {
    bytes: [u8; 16],
    known: usize,
}

impl Partial {
    fn at(ip: &[u8], at: usize, width: usize) -> Self {
        let have = ip.get(at..).unwrap_or(&[]);
        let known = have.len().min(width);
        let mut bytes = [0u8; 16];
        bytes[..known].copy_from_slice(&have[..known]);
        Partial { bytes, known }
    }

    fn within(&self, c: &Cidr) -> Tri {
        let v6 = !c.is_ipv4();
        let value = if v6 {
            u128::from_be_bytes(self.bytes)
        } else {
            u128::from(u32::from_be_bytes([
                self.bytes[0],
                self.bytes[1],
                self.bytes[2],
                self.bytes[3],
            ]))
        };
        let known_bits = u8::try_from(self.known * 8).unwrap_or(u8::MAX);
        let m = mask(v6, c.prefix().min(known_bits));
        if value & m != bits(c.addr()) & m {
            Tri::No
        } else if c.prefix() <= known_bits {
            Tri::Yes
        } else {
            Tri::Maybe
        }
    }
}

/// A packet's fields as AWS reads them, as far as the captured bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    v6: bool,
    src: Partial,
    dst: Partial,
    protocol: Option<u8>,
    ports: Ports,
}

/// Whether AWS mirrors this Ethernet frame under `rules` (one direction's list, in rule
/// number order: the first rule that matches decides; none matching means not mirrored).
///
/// Conservative wherever AWS's behaviour is not documented, so a superset check against it
/// holds whatever AWS really does: a field cut off by truncation matches only "any", a
/// reject rule that might match rejects, and an IPv6 packet with extension headers must be
/// mirrored both when AWS takes the fixed header's next header as its protocol and when
/// it takes the protocol after the extension headers; a frame cut before its EtherType
/// must be mirrored as IPv4 and as IPv6. Frames without IP are not mirrored.
pub fn aws_mirrors(rules: &[Rule], frame: &[u8]) -> bool {
    let views = views(frame);
    !views.is_empty() && views.iter().all(|v| decide(rules, v))
}

fn decide(rules: &[Rule], v: &View) -> bool {
    for r in rules {
        match (r.action, rule_matches(r, v)) {
            (Action::Accept, Tri::Yes) => return true,
            (Action::Reject, Tri::Yes | Tri::Maybe) => return false,
            _ => {}
        }
    }
    false
}

fn rule_matches(r: &Rule, v: &View) -> Tri {
    if r.source.is_ipv4() == v.v6 || r.destination.is_ipv4() == v.v6 {
        return Tri::No;
    }
    let mut m = v.src.within(&r.source).min(v.dst.within(&r.destination));
    if let Some(p) = r.protocol {
        m = m.min(v.protocol.map_or(Tri::Maybe, |x| Tri::from(x == p)));
    }
    if r.source_ports.is_some() || r.destination_ports.is_some() {
        if !matches!(r.protocol, Some(6 | 17)) {
            return Tri::No;
        }
        let side = |p: Option<u16>, range: Option<(u16, u16)>| match (range, p) {
            (None, _) => Tri::Yes,
            (Some((a, b)), Some(p)) => Tri::from((a..=b).contains(&p)),
            (Some(_), None) => Tri::Maybe,
        };
        m = m.min(match v.ports {
            Ports::Present(s, d) => side(s, r.source_ports).min(side(d, r.destination_ports)),
            Ports::Absent => Tri::No,
        });
    }
    m
}

fn be16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn ports_at(b: &[u8], at: usize) -> Ports {
    Ports::Present(be16_at(b, at), be16_at(b, at + 2))
}

const NO_PORTS_YET: Ports = Ports::Present(None, None);

/// The packet's readings: two for IPv6 with extension headers, none without IP.
fn views(frame: &[u8]) -> Vec<View> {
    let Some((ethertype, off)) = l3(frame) else {
        // Cut inside the Ethernet header or its tags: it may have been either IP.
        return [false, true]
            .map(|v6| View {
                v6,
                src: Partial::at(&[], 0, 0),
                dst: Partial::at(&[], 0, 0),
                protocol: None,
                ports: NO_PORTS_YET,
            })
            .to_vec();
    };
    let ip = frame.get(off..).unwrap_or(&[]);
    match ethertype {
        0x0800 => {
            let protocol = ip.get(9).copied();
            let ports = match protocol {
                None => NO_PORTS_YET,
                Some(6 | 17) => match (be16_at(ip, 6), ip.first()) {
                    (Some(frag), _) if frag & 0x1fff != 0 => Ports::Absent,
                    (Some(_), Some(b0)) if usize::from(b0 & 0x0f) >= 5 => {
                        ports_at(ip, usize::from(b0 & 0x0f) * 4)
                    }
                    _ => NO_PORTS_YET,
                },
                Some(_) => Ports::Absent,
            };
            vec![View {
                v6: false,
                src: Partial::at(ip, 12, 4),
                dst: Partial::at(ip, 16, 4),
                protocol,
                ports,
            }]
        }
        0x86dd => {
            let next = ip.get(6).copied();
            let fixed = View {
                v6: true,
                src: Partial::at(ip, 8, 16),
                dst: Partial::at(ip, 24, 16),
                protocol: next,
                ports: match next {
                    None => NO_PORTS_YET,
                    Some(6 | 17) => ports_at(ip, 40),
                    Some(_) => Ports::Absent,
                },
            };
            let (protocol, ports) = past_extensions(ip, next);
            let upper = View {
                protocol,
                ports,
                ..fixed
            };
            if upper == fixed {
                vec![fixed]
            } else {
                vec![fixed, upper]
            }
        }
        _ => Vec::new(),
    }
}

/// The protocol after IPv6 extension headers, and its ports.
fn past_extensions(ip: &[u8], mut next: Option<u8>) -> (Option<u8>, Ports) {
    let mut off = 40usize;
    for _ in 0..8 {
        let Some(h) = next else {
            return (None, NO_PORTS_YET);
        };
        if !IPV6_EXTENSIONS.contains(&h) {
            return match h {
                6 | 17 => (Some(h), ports_at(ip, off)),
                _ => (Some(h), Ports::Absent),
            };
        }
        let after = ip.get(off).copied();
        let len = match h {
            IPV6_FRAGMENT => match be16_at(ip, off + 2) {
                // Nothing after a later fragment's header is a header.
                Some(fo) if fo & 0xfff8 != 0 => return (after, Ports::Absent),
                Some(_) => Some(8),
                None => None,
            },
            51 => ip.get(off + 1).map(|l| (usize::from(*l) + 2) * 4),
            _ => ip.get(off + 1).map(|l| (usize::from(*l) + 1) * 8),
        };
        match len {
            Some(len) => {
                next = after;
                off += len;
            }
            // Cut inside this header: its next header may still name the protocol.
            None => {
                return match after {
                    Some(n @ (6 | 17)) => (Some(n), NO_PORTS_YET),
                    Some(n) if !IPV6_EXTENSIONS.contains(&n) => (Some(n), Ports::Absent),
                    _ => (None, NO_PORTS_YET),
                }
            }
        }
    }
    (None, NO_PORTS_YET)
}
