//! The per-datagram path shared by live captures, `awsvpc decap` and the benchmark:
//! decapsulate, route to the source's interface, filter, truncate, write.

use crate::batch::Batch;
use crate::decap::{self, Direction};
use crate::filter::CaptureFilter;
use crate::log_debug;
use crate::log_msg;
use crate::sink::pcapng::{InterfaceStats, NewInterface, PcapngSink};
use crate::sources::{Route, SourceTable};
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Counters shared by the receive thread, the writer and the toolbar.
#[derive(Debug, Default)]
pub struct Counters {
    pub datagrams: AtomicU64,
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub malformed: AtomicU64,
    pub unexpected: AtomicU64,
    pub filtered: AtomicU64,
    pub socket_drops: AtomicU64,
    pub queue_drops: AtomicU64,
    /// VNIs of the sources that have delivered a datagram (for the path diagnosis).
    pub seen: std::sync::Mutex<Vec<u32>>,
    /// Per VNI: packets AWS did not mirror at the source (CloudWatch SkipMirror), since
    /// the capture started. Upstream of awsvpc, so counted apart from `dropped`.
    pub upstream: std::sync::Mutex<Vec<(u32, u64)>>,
}

impl Counters {
    pub fn seen_vnis(&self) -> Vec<u32> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn upstream_of(&self, vni: u32) -> u64 {
        self.upstream
            .lock()
            .map(|v| v.iter().filter(|(x, _)| *x == vni).map(|(_, n)| n).sum())
            .unwrap_or(0)
    }

    fn upstream_total(&self) -> u64 {
        self.upstream
            .lock()
            .map(|v| v.iter().map(|(_, n)| n).sum())
            .unwrap_or(0)
    }

    pub fn dropped(&self) -> u64 {
        self.socket_drops.load(Ordering::Relaxed) + self.queue_drops.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let upstream = match self.upstream_total() {
            0 => String::new(),
            n => format!(" · {n} not mirrored by AWS"),
        };
        format!(
            "{} packets, {} · {} malformed · {} dropped{upstream}",
            g(&self.packets),
            human_bytes(g(&self.bytes)),
            g(&self.malformed),
            self.dropped()
        )
    }

    pub fn full(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} datagrams received; {} packets ({} bytes) written; {} malformed; {} from unexpected sources; {} not matching the capture filter; {} dropped by the kernel socket; {} dropped because the reader was slower than the mirror",
            g(&self.datagrams),
            g(&self.packets),
            g(&self.bytes),
            g(&self.malformed),
            g(&self.unexpected),
            g(&self.filtered),
            g(&self.socket_drops),
            g(&self.queue_drops)
        ) + &match self.upstream_total() {
            0 => String::new(),
            n => format!("; {n} not mirrored by AWS at the source (CloudWatch NetworkPacketsSkipMirrorIn/Out)"),
        }
    }
}

pub fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i < U.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Per-batch counts, published to the shared atomics once per batch: one atomic add per
/// packet per counter would cost more than decapsulation itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalCounts {
    datagrams: u64,
    packets: u64,
    bytes: u64,
    malformed: u64,
    unexpected: u64,
    filtered: u64,
}

/// Decapsulates, routes, filters and writes one batch. Shared by the live capture and
/// the benchmark.
pub struct Pipeline<W: Write> {
    pub sink: PcapngSink<W>,
    pub sources: SourceTable,
    pub filter: Option<CaptureFilter>,
    pub snaplen: Option<u32>,
    pub counters: Arc<Counters>,
    /// Drops already attached to a written packet (`epb_dropcount`).
    pub reported_drops: u64,
    pub local: LocalCounts,
}

impl<W: Write> Pipeline<W> {
    /// Processes a batch from the local collector.
    pub fn process(&mut self, batch: &Batch) -> io::Result<()> {
        // Losses are noted on the first frame written after them.
        let dropped = self.counters.dropped();
        let mut pending = dropped.saturating_sub(self.reported_drops);
        for i in 0..batch.len() {
            let (payload, src, ts, _) = batch.get(i);
            if self.write_one(src, false, payload, ts, pending)? {
                pending = 0;
            }
        }
        self.reported_drops = dropped - pending;
        self.publish();
        Ok(())
    }

    /// Adds the counts since the last call to the shared counters.
    pub fn publish(&mut self) {
        let l = std::mem::take(&mut self.local);
        let c = &self.counters;
        for (counter, n) in [
            (&c.datagrams, l.datagrams),
            (&c.packets, l.packets),
            (&c.bytes, l.bytes),
            (&c.malformed, l.malformed),
            (&c.unexpected, l.unexpected),
            (&c.filtered, l.filtered),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Processes one mirror datagram (the UDP payload) from `src`, received at `ts`.
    /// Returns whether a frame was written.
    #[inline]
    pub fn process_one(
        &mut self,
        src: IpAddr,
        geneve: bool,
        payload: &[u8],
        ts: Duration,
    ) -> io::Result<bool> {
        self.write_one(src, geneve, payload, ts, 0)
    }

    #[inline]
    fn write_one(
        &mut self,
        src: IpAddr,
        geneve: bool,
        payload: &[u8],
        ts: Duration,
        drops: u64,
    ) -> io::Result<bool> {
        self.local.datagrams += 1;
        let inner = match decap::decapsulate(src, geneve, payload) {
            Ok(inner) => inner,
            Err(e) => {
                self.local.malformed += 1;
                if self.counters.malformed.load(Ordering::Relaxed) + self.local.malformed <= 10 {
                    log_debug!(
                        "malformed datagram from {src} ({} bytes): {e}",
                        payload.len()
                    );
                }
                return Ok(false);
            }
        };
        let (index, direction) = match self.sources.route(&inner) {
            Route::Unexpected { first } => {
                self.local.unexpected += 1;
                if first {
                    log_msg!("ignoring datagrams from unexpected mirror source {} (not part of this capture)", inner.source);
                }
                return Ok(false);
            }
            Route::Interface {
                index,
                new,
                direction,
            } => {
                if new {
                    self.declare(index)?;
                }
                (index, direction)
            }
        };
        let data = inner.data();
        let original_len = inner.original_len();
        if let Some(f) = &self.filter {
            if !f.matches(data, original_len) {
                self.local.filtered += 1;
                return Ok(false);
            }
        }
        let data = match self.snaplen {
            Some(s) if (s as usize) < data.len() => &data[..s as usize],
            _ => data,
        };
        self.sink.write_packet(
            index,
            ts,
            data,
            original_len,
            direction.map(Direction::epb_flags),
            drops,
        )?;
        let iface = &mut self.sources.interfaces[index as usize];
        iface.accepted += 1;
        match direction {
            Some(Direction::Inbound) => iface.inbound += 1,
            Some(Direction::Outbound) => iface.outbound += 1,
            None => {}
        }
        self.local.packets += 1;
        self.local.bytes += data.len() as u64;
        Ok(true)
    }

    fn declare(&mut self, index: u32) -> io::Result<()> {
        let iface = &self.sources.interfaces[index as usize];
        if let Ok(mut seen) = self.counters.seen.lock() {
            seen.push(iface.key.vni);
        }
        log_msg!(
            "new mirror source {}: writing it as interface {} ({})",
            iface.key,
            iface.name,
            iface.description
        );
        let id = self.sink.add_interface(&NewInterface {
            name: &iface.name,
            description: &iface.description,
            mac: iface.mac,
            snaplen: self.snaplen.unwrap_or(0),
            filter: self.filter.as_ref().map(CaptureFilter::expression),
        })?;
        debug_assert_eq!(id, index);
        Ok(())
    }

    /// Interface Statistics Blocks. Drops happen at the collector socket, before a datagram
    /// can be attributed to a source, so they are reported once, on the first interface.
    pub fn write_statistics(&mut self, start: Duration) -> io::Result<()> {
        let now = unix_now();
        let dropped = self.counters.dropped();
        for (i, iface) in self.sources.interfaces.iter().enumerate() {
            let stats = InterfaceStats {
                received: iface.received,
                dropped: if i == 0 { dropped } else { 0 },
                accepted: iface.accepted,
                delivered: iface.accepted,
            };
            let mut comment = (i == 0 && dropped > 0).then(|| {
                "drops are counted for the whole collector socket, not per source".to_string()
            });
            let upstream = self.counters.upstream_of(iface.key.vni);
            if upstream > 0 {
                let note = format!("{upstream} packets were not mirrored by AWS at the source (CloudWatch NetworkPacketsSkipMirrorIn/Out: production traffic had priority)");
                comment = Some(match comment {
                    Some(c) => format!("{c}; {note}"),
                    None => note,
                });
            }
            self.sink
                .write_statistics(i as u32, now, start, &stats, comment.as_deref())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    use std::net::Ipv4Addr;

    fn pipeline() -> Pipeline<Vec<u8>> {
        Pipeline {
            sink: PcapngSink::new(Vec::new(), "test").unwrap(),
            sources: SourceTable::new(Vec::new(), None),
            filter: None,
            snaplen: None,
            counters: Arc::new(Counters::default()),
            reported_drops: 0,
            local: LocalCounts::default(),
        }
    }

    fn datagram(vni: u8) -> Vec<u8> {
        let mut d = vec![0x08, 0, 0, 0, 0, 0, vni, 0];
        d.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x06]);
        d.extend_from_slice(&[0; 28]);
        d
    }

    fn drop_counts(bytes: &[u8]) -> Vec<Option<u64>> {
        let mut r = PcapNgReader::new(bytes).unwrap();
        let mut v = Vec::new();
        while let Some(b) = r.next_block() {
            if let Block::EnhancedPacket(p) = b.unwrap() {
                v.push(p.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::DropCount(n) => Some(*n),
                    _ => None,
                }));
            }
        }
        v
    }

    #[test]
    fn drops_ride_on_the_next_written_frame() {
        let mut p = pipeline();
        let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
        let (good, bad) = (datagram(1), vec![0u8; 3]);
        let mut b = Batch::new();
        b.fill_from([(&good[..], src, Duration::ZERO)]);
        p.process(&b).unwrap();
        p.counters.queue_drops.store(5, Ordering::Relaxed);
        // A batch with nothing written keeps the drops pending.
        b.fill_from([(&bad[..], src, Duration::ZERO)]);
        p.process(&b).unwrap();
        b.fill_from([
            (&good[..], src, Duration::ZERO),
            (&good[..], src, Duration::ZERO),
        ]);
        p.process(&b).unwrap();
        p.counters.socket_drops.store(2, Ordering::Relaxed);
        b.fill_from([(&good[..], src, Duration::ZERO)]);
        p.process(&b).unwrap();
        assert_eq!(
            drop_counts(p.sink.get_ref()),
            vec![None, Some(5), None, Some(2)]
        );
        assert_eq!(p.counters.malformed.load(Ordering::Relaxed), 1);
    }

    /// SkipMirror counts (from the metrics poller) are their own count: in the toolbar's
    /// summary and the log's statistics, and on the ISB of that source, not in `dropped`.
    #[test]
    fn upstream_drops_are_their_own_count() {
        use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
        let mut p = pipeline();
        let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
        let mut b = Batch::new();
        let (one, two) = (datagram(1), datagram(2));
        b.fill_from([
            (&one[..], src, Duration::ZERO),
            (&two[..], src, Duration::ZERO),
        ]);
        p.process(&b).unwrap();
        assert_eq!(p.counters.seen_vnis(), vec![1, 2]);
        *p.counters.upstream.lock().unwrap() = vec![(2, 12_345)];
        assert!(
            p.counters
                .summary()
                .ends_with("0 dropped · 12345 not mirrored by AWS"),
            "{}",
            p.counters.summary()
        );
        assert!(p
            .counters
            .full()
            .contains("12345 not mirrored by AWS at the source"));
        assert_eq!(p.counters.dropped(), 0);
        p.write_statistics(Duration::ZERO).unwrap();
        let mut r = PcapNgReader::new(&p.sink.get_ref()[..]).unwrap();
        let mut comments = Vec::new();
        while let Some(b) = r.next_block() {
            if let Block::InterfaceStatistics(s) = b.unwrap() {
                comments.push(s.options.iter().find_map(|o| match o {
                    InterfaceStatisticsOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                }));
            }
        }
        assert_eq!(comments.len(), 2);
        assert_eq!(comments[0], None);
        assert!(comments[1]
            .as_deref()
            .unwrap()
            .starts_with("12345 packets were not mirrored by AWS"));
    }
}
