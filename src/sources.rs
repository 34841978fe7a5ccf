//! Which mirror sources a capture expects, what they are called, and the pcapng interface
//! each one is written to.

use crate::decap::{Direction, Inner, SourceKey};
use crate::wire::ethernet::{format_mac, parse_mac, MacAddr};
use std::collections::HashMap;

/// What is known about the mirror session behind a VNI: the ENI it mirrors and its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownSource {
    pub vni: u32,
    pub eni: String,
    pub mac: Option<MacAddr>,
    /// Captured on this instance of its own (`--capture-mode`), not mirrored: what its
    /// kernel sees, segmentation offload included.
    pub on_host: Option<String>,
}

/// Parses `VNI=ENI[,MAC]` entries separated by `;` or whitespace (the form of `--source`).
pub fn parse_source_map(spec: &str) -> Result<Vec<KnownSource>, String> {
    let mut out: Vec<KnownSource> = Vec::new();
    for entry in spec.split([';', ' ', '\n', '\t']).filter(|e| !e.is_empty()) {
        let (vni, rest) = entry.split_once('=').ok_or_else(|| {
            format!("source {entry:?} is not of the form VNI=ENI[,MAC] (for example 5569041=eni-0abc,02:85:69:c2:ab:02)")
        })?;
        let vni: u32 = vni
            .trim()
            .parse()
            .ok()
            .filter(|v| *v < 1 << 24)
            .ok_or_else(|| {
                format!(
                    "source {entry:?} has VNI {vni:?}, which is not a number from 0 to 16777215"
                )
            })?;
        let (eni, mac) = match rest.split_once(',') {
            Some((eni, mac)) => {
                let m = parse_mac(mac).ok_or_else(|| {
                    format!("source {entry:?} has MAC {mac:?}, which is not six hex bytes like 02:85:69:c2:ab:02")
                })?;
                (eni.trim(), Some(m))
            }
            None => (rest.trim(), None),
        };
        if eni.is_empty()
            || !eni
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(format!(
                "source {entry:?} needs an interface name such as eni-0abc after \"=\""
            ));
        }
        if out.iter().any(|s| s.vni == vni) {
            return Err(format!("VNI {vni} is given twice in the source map"));
        }
        out.push(KnownSource {
            vni,
            eni: eni.to_string(),
            mac,
            on_host: None,
        });
    }
    Ok(out)
}

/// A pcapng interface created for one mirror source.
#[derive(Debug, Clone)]
pub struct Interface {
    pub key: SourceKey,
    pub name: String,
    pub description: String,
    pub mac: Option<MacAddr>,
    pub received: u64,
    pub accepted: u64,
    pub inbound: u64,
    pub outbound: u64,
}

/// Where a decapsulated frame goes.
pub enum Route {
    /// Write it to this interface; `new` when the interface must be declared first.
    Interface {
        index: u32,
        new: bool,
        direction: Option<Direction>,
    },
    /// Not a source this capture expects: counted, never mixed into the user's capture.
    Unexpected { first: bool },
}

/// Maps mirror sources to pcapng interfaces, in order of first appearance.
pub struct SourceTable {
    known: Vec<KnownSource>,
    only_vnis: Option<Vec<u32>>,
    by_key: HashMap<SourceKey, u32>,
    pub interfaces: Vec<Interface>,
    unexpected_seen: HashMap<SourceKey, u64>,
    /// The last source routed: mirror traffic comes in long runs from one session.
    last: Option<(SourceKey, u32)>,
}

impl SourceTable {
    /// With `only_vnis`, datagrams with other VNIs are unexpected; otherwise any source is
    /// accepted.
    pub fn new(known: Vec<KnownSource>, only_vnis: Option<Vec<u32>>) -> Self {
        SourceTable {
            known,
            only_vnis,
            by_key: HashMap::new(),
            interfaces: Vec::new(),
            unexpected_seen: HashMap::new(),
            last: None,
        }
    }

    fn expects(&self, vni: u32) -> bool {
        match &self.only_vnis {
            Some(v) => v.contains(&vni),
            None => true,
        }
    }

    pub fn unexpected(&self) -> impl Iterator<Item = (&SourceKey, &u64)> {
        self.unexpected_seen.iter()
    }

    #[inline]
    pub fn route(&mut self, inner: &Inner<'_>) -> Route {
        let key = inner.source;
        let cached = self.last.filter(|(k, _)| *k == key).map(|(_, i)| i);
        let (index, new) = match cached.or_else(|| self.by_key.get(&key).copied()) {
            Some(i) => (i, false),
            None => {
                if !self.expects(key.vni) {
                    let n = self.unexpected_seen.entry(key).or_insert(0);
                    *n += 1;
                    return Route::Unexpected { first: *n == 1 };
                }
                (self.add(key), true)
            }
        };
        self.last = Some((key, index));
        let iface = &mut self.interfaces[index as usize];
        iface.received += 1;
        let direction = iface
            .mac
            .as_ref()
            .and_then(|m| Direction::from_macs(&inner.frame, m));
        Route::Interface {
            index,
            new,
            direction,
        }
    }

    fn add(&mut self, key: SourceKey) -> u32 {
        let known = self.known.iter().find(|k| k.vni == key.vni);
        let name = match known {
            // The same VNI from a second address (two sessions sharing a VNI) must not
            // share a name: the address tells them apart.
            Some(k) if !self.interfaces.iter().any(|i| i.name == k.eni) => k.eni.clone(),
            Some(k) => format!("{}@{}", k.eni, key.ip),
            None => key.to_string(),
        };
        let mac = known.and_then(|k| k.mac);
        let description = match (known, &mac) {
            (
                Some(
                    k @ KnownSource {
                        on_host: Some(i), ..
                    },
                ),
                m,
            ) => format!(
                "On-host capture of {}{} on {i}, VNI {}: what its kernel sees, not a mirror",
                k.eni,
                m.as_ref()
                    .map(|m| format!(" (MAC {})", format_mac(m)))
                    .unwrap_or_default(),
                key.vni
            ),
            (Some(k), Some(m)) => format!(
                "Mirror of {} (MAC {}) from {}, VNI {}",
                k.eni,
                format_mac(m),
                key.ip,
                key.vni
            ),
            _ => format!("Mirror source {}, VNI {}", key.ip, key.vni),
        };
        let index = self.interfaces.len() as u32;
        self.interfaces.push(Interface {
            key,
            name,
            description,
            mac,
            received: 0,
            accepted: 0,
            inbound: 0,
            outbound: 0,
        });
        self.by_key.insert(key, index);
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_source_maps() {
        let m = parse_source_map("5569041=eni-0abc,02:85:69:c2:ab:02; 42=eni-0def").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mac, Some([2, 0x85, 0x69, 0xc2, 0xab, 2]));
        assert_eq!(m[1].eni, "eni-0def");
        assert!(parse_source_map("").unwrap().is_empty());
    }

    #[test]
    fn refuses_bad_source_maps_with_reasons() {
        for (bad, needle) in [
            ("eni-0abc", "VNI=ENI"),
            ("x=eni-1", "not a number"),
            ("16777216=eni-1", "not a number"),
            ("1=eni-1,zz", "six hex bytes"),
            ("1=", "interface name"),
            ("1=a 1=b", "twice"),
        ] {
            let e = parse_source_map(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
