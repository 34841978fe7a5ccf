//! The pcapng stream Wireshark reads from its fifo (or `awsvpc decap` writes to a file):
//! one Section Header, one Interface Description per mirror source, Enhanced Packet Blocks
//! with direction flags and original lengths, and Interface Statistics at the end.

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::interface_statistics::{
    InterfaceStatisticsBlock, InterfaceStatisticsOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::{Block, PcapNgWriter};
use pcap_file::{DataLink, Endianness, PcapError};
use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

/// pcapng timestamps are written in nanoseconds (`if_tsresol` = 9): pcap-file encodes the
/// EPB timestamp as nanoseconds, and the collector's kernel timestamps have that resolution.
const TSRESOL_NANOS: u8 = 9;

/// Statistics for one interface, written as an Interface Statistics Block.
#[derive(Debug, Default, Clone, Copy)]
pub struct InterfaceStats {
    /// Mirror datagrams received for this source.
    pub received: u64,
    /// Frames lost before awsvpc could deliver them (kernel socket and queue drops).
    pub dropped: u64,
    /// Frames the capture filter accepted.
    pub accepted: u64,
    /// Frames written.
    pub delivered: u64,
}

/// pcapng stores 64-bit timestamps as two 32-bit words, high word first, each in section
/// byte order; pcap-file writes the ISB's as one u64, which puts the low word first on a
/// little-endian section. Swapping the halves beforehand yields the pcapng layout.
fn split_timestamp(t: Duration) -> u64 {
    let v = t.as_nanos() as u64;
    match Endianness::native() {
        Endianness::Little => v.rotate_left(32),
        Endianness::Big => v,
    }
}

pub struct PcapngSink<W: Write> {
    writer: PcapNgWriter<W>,
    interfaces: u32,
    /// Reused for every packet so the hot path does not allocate an options vector.
    options: Vec<EnhancedPacketOption<'static>>,
}

pub struct NewInterface<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub mac: Option<[u8; 6]>,
    pub snaplen: u32,
    pub filter: Option<&'a str>,
}

fn io_err(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl<W: Write> PcapngSink<W> {
    /// Writes the Section Header Block. `application` becomes `shb_userappl`.
    pub fn new(out: W, application: &str) -> io::Result<Self> {
        let shb = SectionHeaderBlock {
            endianness: Endianness::native(),
            major_version: 1,
            minor_version: 0,
            section_length: -1,
            options: vec![
                SectionHeaderOption::UserApplication(Cow::Owned(application.to_string())),
                SectionHeaderOption::OS(Cow::Owned(format!(
                    "{} {}",
                    std::env::consts::OS,
                    std::env::consts::ARCH
                ))),
            ],
        };
        let writer = PcapNgWriter::with_section_header(out, shb).map_err(io_err)?;
        Ok(PcapngSink {
            writer,
            interfaces: 0,
            options: Vec::with_capacity(1),
        })
    }

    pub fn interface_count(&self) -> u32 {
        self.interfaces
    }

    /// Declares an Ethernet interface and returns its id.
    pub fn add_interface(&mut self, i: &NewInterface<'_>) -> io::Result<u32> {
        let mut options = vec![
            InterfaceDescriptionOption::IfName(Cow::Owned(i.name.to_string())),
            InterfaceDescriptionOption::IfDescription(Cow::Owned(i.description.to_string())),
            InterfaceDescriptionOption::IfTsResol(TSRESOL_NANOS),
        ];
        if let Some(mac) = i.mac {
            options.push(InterfaceDescriptionOption::IfMacAddr(Cow::Owned(
                mac.to_vec(),
            )));
        }
        if let Some(f) = i.filter {
            // if_filter: a leading 0 byte marks a libpcap filter string.
            let mut v = vec![0u8];
            v.extend_from_slice(f.as_bytes());
            options.push(InterfaceDescriptionOption::IfFilter(Cow::Owned(v)));
        }
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: i.snaplen,
            options,
        };
        self.writer
            .write_block(&Block::InterfaceDescription(idb))
            .map_err(io_err)?;
        self.interfaces += 1;
        Ok(self.interfaces - 1)
    }

    /// Writes one frame. `timestamp` is the time since the Unix epoch; `drops_before` is
    /// how many frames were lost since the previous one written.
    #[inline]
    pub fn write_packet(
        &mut self,
        interface: u32,
        timestamp: Duration,
        data: &[u8],
        original_len: usize,
        flags: Option<u32>,
        drops_before: u64,
    ) -> io::Result<()> {
        let mut options = std::mem::take(&mut self.options);
        options.clear();
        if let Some(f) = flags {
            options.push(EnhancedPacketOption::Flags(f));
        }
        if drops_before > 0 {
            // epb_dropcount: packets lost since the previous one. dumpcap keeps EPBs but
            // drops the ISBs it reads from a pipe, so this is how losses reach saved files.
            options.push(EnhancedPacketOption::DropCount(drops_before));
        }
        let block = Block::EnhancedPacket(EnhancedPacketBlock {
            interface_id: interface,
            timestamp,
            original_len: original_len.min(u32::MAX as usize) as u32,
            data: Cow::Borrowed(data),
            options,
        });
        let r = self.writer.write_block(&block);
        if let Block::EnhancedPacket(b) = block {
            let mut v = b.options;
            v.clear();
            // SAFETY: the vector is empty, so no value of the shorter lifetime survives;
            // lifetimes do not change layout. This keeps its allocation for the next packet.
            self.options = unsafe {
                std::mem::transmute::<
                    Vec<EnhancedPacketOption<'_>>,
                    Vec<EnhancedPacketOption<'static>>,
                >(v)
            };
        }
        r.map(|_| ()).map_err(io_err)
    }

    /// Writes an Interface Statistics Block for `interface`.
    pub fn write_statistics(
        &mut self,
        interface: u32,
        now: Duration,
        start: Duration,
        stats: &InterfaceStats,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let mut options = vec![
            InterfaceStatisticsOption::IsbStartTime(split_timestamp(start)),
            InterfaceStatisticsOption::IsbEndTime(split_timestamp(now)),
            InterfaceStatisticsOption::IsbIfRecv(stats.received),
            InterfaceStatisticsOption::IsbIfDrop(stats.dropped),
            InterfaceStatisticsOption::IsbFilterAccept(stats.accepted),
            InterfaceStatisticsOption::IsbUsrDeliv(stats.delivered),
        ];
        if let Some(c) = comment {
            options.push(InterfaceStatisticsOption::Comment(Cow::Owned(
                c.to_string(),
            )));
        }
        let isb = InterfaceStatisticsBlock {
            interface_id: interface,
            timestamp: split_timestamp(now),
            options,
        };
        self.writer
            .write_block(&Block::InterfaceStatistics(isb))
            .map(|_| ())
            .map_err(io_err)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.get_mut().flush()
    }

    pub fn get_ref(&self) -> &W {
        self.writer.get_ref()
    }

    pub fn into_inner(self) -> W {
        self.writer.into_inner()
    }
}
