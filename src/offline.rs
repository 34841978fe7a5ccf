//! `awsvpc decap`: turns a capture taken on a mirror target (`tcpdump -i eth0 -w m.pcap
//! udp port 4789`) into pcapng with one interface per mirror source, direction flags and
//! original lengths, through the same pipeline as a live capture.

use crate::decap::outer_udp;
use crate::filter::compile_optional;
use crate::pcap_reader::PcapReader;
use crate::pipeline::{Counters, Pipeline};
use crate::sink::pcapng::PcapngSink;
use crate::sources::{KnownSource, SourceTable};
use crate::wire::{ethernet, geneve, linux_sll, WireError};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

pub struct Options {
    pub sources: Vec<KnownSource>,
    pub filter: Option<String>,
    /// UDP ports carrying VXLAN (4789 unless told otherwise); 6081 is always GENEVE.
    pub ports: Vec<u16>,
    pub snaplen: Option<u32>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub packets_read: u64,
    pub not_mirror: u64,
    pub unsupported_links: Vec<String>,
    pub written: u64,
    pub malformed: u64,
    pub filtered: u64,
    pub interfaces: Vec<(String, u64, u64, u64)>,
    /// Why the input ended early (a truncated last record, damage): the packets before it
    /// were decapsulated and written.
    pub damaged: Option<String>,
}

impl Report {
    pub fn summary(&self, out: &str) -> String {
        let ifaces: Vec<String> = self
            .interfaces
            .iter()
            .map(|(n, total, inb, outb)| {
                if inb + outb > 0 {
                    format!("{n}: {total} ({outb} outbound, {inb} inbound)")
                } else {
                    format!("{n}: {total}")
                }
            })
            .collect();
        format!(
            "{} frames written to {out} from {} mirror source(s) [{}]; {} malformed, {} filtered out, {} packets that were not mirror traffic",
            self.written,
            self.interfaces.len(),
            ifaces.join("; "),
            self.malformed,
            self.filtered,
            self.not_mirror
        )
    }
}

/// The outer IP packet inside a captured frame, per the capture's link type.
fn ip_of(link: DataLink, frame: &[u8]) -> Result<Option<&[u8]>, WireError> {
    let by_ethertype = |ty: u16, rest: &'_ [u8]| -> Option<()> {
        let _ = rest;
        (ty == ethernet::ETHERTYPE_IPV4 || ty == ethernet::ETHERTYPE_IPV6).then_some(())
    };
    Ok(match link {
        DataLink::ETHERNET => {
            let f = ethernet::Frame::new_checked(frame)?;
            match f.l3() {
                Some((ty, off)) if by_ethertype(ty, frame).is_some() => Some(&frame[off..]),
                _ => None,
            }
        }
        DataLink::LINUX_SLL => {
            let (ty, rest) = linux_sll::sll_payload(frame)?;
            by_ethertype(ty, rest).map(|_| rest)
        }
        DataLink::LINUX_SLL2 => {
            let (ty, rest) = linux_sll::sll2_payload(frame)?;
            by_ethertype(ty, rest).map(|_| rest)
        }
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(frame),
        DataLink::NULL | DataLink::LOOP => frame.get(4..),
        _ => return Err(WireError::Malformed("unsupported link type")),
    })
}

/// Reads pcap or pcapng from `input` and writes pcapng to `output`.
pub fn decap<R: Read, W: Write>(
    input: R,
    output: W,
    opts: &Options,
    name: &str,
) -> Result<Report, String> {
    let mut input = std::io::BufReader::new(input);
    let mut magic = [0u8; 4];
    input
        .read_exact(&mut magic)
        .map_err(|_| format!("{name} is not a capture file: it is shorter than a pcap header."))?;
    let chained = std::io::Cursor::new(magic).chain(input);
    let filter =
        compile_optional(opts.filter.as_deref()).map_err(|e| format!("Invalid filter: {e}."))?;
    let sink = PcapngSink::new(
        output,
        &format!("awsvpc {} decap", env!("CARGO_PKG_VERSION")),
    )
    .map_err(|e| format!("Cannot write the output: {e}."))?;
    let mut p = Pipeline {
        sink,
        sources: SourceTable::new(opts.sources.clone(), None),
        filter,
        snaplen: opts.snaplen,
        counters: Arc::new(Counters::default()),
        reported_drops: 0,
        local: Default::default(),
    };
    let mut report = Report::default();
    let mut handle =
        |report: &mut Report, link: DataLink, ts: Duration, data: &[u8]| -> Result<(), String> {
            report.packets_read += 1;
            let ip = match ip_of(link, data) {
                Ok(Some(ip)) => ip,
                Ok(None) => {
                    report.not_mirror += 1;
                    return Ok(());
                }
                Err(WireError::Malformed("unsupported link type")) => {
                    let l = format!("{link:?}");
                    if !report.unsupported_links.contains(&l) {
                        report.unsupported_links.push(l);
                    }
                    return Ok(());
                }
                Err(_) => {
                    report.malformed += 1;
                    return Ok(());
                }
            };
            let Ok((src, udp)) = outer_udp(ip) else {
                report.not_mirror += 1;
                return Ok(());
            };
            let geneve = udp.dst_port() == geneve::PORT;
            if !geneve && !opts.ports.contains(&udp.dst_port()) {
                report.not_mirror += 1;
                return Ok(());
            }
            p.process_one(src, geneve, udp.payload(), ts)
                .map(|_| ())
                .map_err(|e| format!("Cannot write the output: {e}."))
        };
    match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => {
            let mut r = PcapNgReader::new(chained).map_err(|e| format!("{name} is not a readable pcapng file: {e}."))?;
            // pcap-file reads EPB timestamps as nanoseconds; rescale by each interface's
            // if_tsresol (microseconds when absent).
            let mut ifaces: Vec<(DataLink, u8)> = Vec::new();
            while let Some(block) = r.next_block() {
                let block = match block {
                    Ok(b) => b,
                    Err(e) => {
                        report.damaged = Some(e.to_string());
                        break;
                    }
                };
                match block {
                    Block::SectionHeader(_) => ifaces.clear(),
                    Block::InterfaceDescription(idb) => {
                        let res = idb
                            .options
                            .iter()
                            .find_map(|o| match o {
                                InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                                _ => None,
                            })
                            .unwrap_or(6);
                        ifaces.push((idb.linktype, res));
                    }
                    Block::EnhancedPacket(epb) => {
                        let Some(&(link, res)) = ifaces.get(epb.interface_id as usize) else {
                            return Err(format!("{name} has a packet for undeclared interface {}.", epb.interface_id));
                        };
                        handle(&mut report, link, rescale(epb.timestamp.as_nanos(), res), &epb.data)?;
                    }
                    Block::SimplePacket(spb) => {
                        let (link, _) = *ifaces.first().ok_or_else(|| format!("{name} has a packet before any interface."))?;
                        handle(&mut report, link, Duration::ZERO, &spb.data)?;
                    }
                    _ => {}
                }
            }
        }
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d] | [0x4d, 0x3c, 0xb2, 0xa1] => {
            let mut r = PcapReader::new(chained).map_err(|e| format!("{name} is not a readable pcap file: {e}."))?;
            let link = DataLink::from(r.header.linktype);
            while let Some(rec) = r.next_record() {
                let rec = match rec {
                    Ok(rec) => rec,
                    Err(e) => {
                        report.damaged = Some(e.to_string());
                        break;
                    }
                };
                handle(&mut report, link, rec.timestamp, rec.data)?;
            }
        }
        m => {
            return Err(format!(
                "{name} is not a pcap or pcapng capture (it starts with {:02x} {:02x} {:02x} {:02x}); capture on the mirror target with tcpdump -w.",
                m[0], m[1], m[2], m[3]
            ))
        }
    }
    p.publish();
    // A capture cut short (a killed tcpdump) is common: what came before the damage is kept,
    // unless nothing usable did.
    if let Some(why) = &report.damaged {
        if p.counters
            .datagrams
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            return Err(format!(
                "{name} is damaged after packet {} ({why}), and holds no mirror traffic before that; capture again on the mirror target.",
                report.packets_read
            ));
        }
    }
    p.write_statistics(Duration::ZERO)
        .map_err(|e| format!("Cannot write the output: {e}."))?;
    p.sink
        .flush()
        .map_err(|e| format!("Cannot write the output: {e}."))?;
    let c = &p.counters;
    use std::sync::atomic::Ordering::Relaxed;
    report.written = c.packets.load(Relaxed);
    report.malformed += c.malformed.load(Relaxed);
    report.filtered = c.filtered.load(Relaxed);
    report.interfaces = p
        .sources
        .interfaces
        .iter()
        .map(|i| (i.name.clone(), i.accepted, i.inbound, i.outbound))
        .collect();
    if !report.unsupported_links.is_empty() && report.written == 0 {
        return Err(format!(
            "{name} uses link type {}, which awsvpc cannot read; capture with tcpdump on the target's Ethernet interface or -i any.",
            report.unsupported_links.join(", ")
        ));
    }
    if p.counters.datagrams.load(Relaxed) == 0 {
        return Err(format!(
            "{name} holds {} packets but no VXLAN on UDP {} or GENEVE on UDP 6081; capture on the mirror target with the filter \"udp port 4789\", or name the port with --port.",
            report.packets_read,
            opts.ports.iter().map(u16::to_string).collect::<Vec<_>>().join("/")
        ));
    }
    Ok(report)
}

/// A timestamp read as if in nanoseconds, converted from the interface's real resolution
/// (`if_tsresol`: 10^-n, or 2^-n when the high bit is set).
fn rescale(raw: u128, tsresol: u8) -> Duration {
    let nanos = if tsresol & 0x80 != 0 {
        let shift = u32::from(tsresol & 0x7f).min(127);
        (raw * 1_000_000_000) >> shift
    } else {
        let exp = u32::from(tsresol).min(30);
        if exp >= 9 {
            raw / 10u128.pow(exp - 9)
        } else {
            raw.saturating_mul(10u128.pow(9 - exp))
        }
    };
    Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::rescale;
    use std::time::Duration;

    #[test]
    fn rescales_resolutions() {
        assert_eq!(rescale(1_500_000, 6), Duration::from_millis(1500));
        assert_eq!(rescale(1_500_000_000, 9), Duration::from_millis(1500));
        assert_eq!(rescale(3, 0x81), Duration::from_millis(1500));
        assert_eq!(rescale(u128::MAX / 2, 0), Duration::from_nanos(u64::MAX));
    }
}
