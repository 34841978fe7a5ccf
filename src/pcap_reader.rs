//! A tolerant reader of classic pcap files. pcap-file refuses records whose original
//! length exceeds the file's snaplen, which is every truncated capture; tcpdump and
//! Wireshark accept those, and so must `awsvpc decap`.

use std::io::{self, Read};
use std::time::Duration;

/// Records longer than this are damage, not packets (libpcap's own upper bound).
const MAX_RECORD: u32 = 262_144;

pub struct Header {
    pub linktype: u32,
    pub snaplen: u32,
    nanos: bool,
    big_endian: bool,
}

pub struct Record<'a> {
    pub timestamp: Duration,
    pub original_len: u32,
    pub data: &'a [u8],
}

pub struct PcapReader<R: Read> {
    input: R,
    pub header: Header,
    buf: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a pcap file")]
    NotPcap,
    #[error("the file ends inside a record header")]
    TruncatedHeader,
    #[error("record length {0} is impossible")]
    BadLength(u32),
    #[error("the last record is cut short")]
    TruncatedRecord,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl<R: Read> PcapReader<R> {
    pub fn new(mut input: R) -> Result<Self, Error> {
        let mut h = [0u8; 24];
        input.read_exact(&mut h).map_err(|_| Error::NotPcap)?;
        let (nanos, big_endian) = match [h[0], h[1], h[2], h[3]] {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0xa1, 0xb2, 0xc3, 0xd4] => (false, true),
            [0x4d, 0x3c, 0xb2, 0xa1] => (true, false),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            _ => return Err(Error::NotPcap),
        };
        let u32_at = |at: usize| {
            let b = [h[at], h[at + 1], h[at + 2], h[at + 3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        Ok(PcapReader {
            input,
            header: Header {
                // The upper bits may carry FCS information; the link type is the low 16.
                linktype: u32_at(20) & 0xffff,
                snaplen: u32_at(16),
                nanos,
                big_endian,
            },
            buf: Vec::new(),
        })
    }

    /// The next record, `None` at a clean end of file.
    pub fn next_record(&mut self) -> Option<Result<Record<'_>, Error>> {
        let mut h = [0u8; 16];
        match read_full(&mut self.input, &mut h) {
            Ok(0) => return None,
            Ok(16) => {}
            Ok(_) => return Some(Err(Error::TruncatedHeader)),
            Err(e) => return Some(Err(e.into())),
        }
        let be = self.header.big_endian;
        let u = |at: usize| {
            let b = [h[at], h[at + 1], h[at + 2], h[at + 3]];
            if be {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (secs, frac, incl, orig) = (u(0), u(4), u(8), u(12));
        if incl > MAX_RECORD {
            return Some(Err(Error::BadLength(incl)));
        }
        self.buf.resize(incl as usize, 0);
        match read_full(&mut self.input, &mut self.buf) {
            Ok(n) if n == incl as usize => {}
            Ok(_) => return Some(Err(Error::TruncatedRecord)),
            Err(e) => return Some(Err(e.into())),
        }
        let nanos = if self.header.nanos {
            frac.min(999_999_999)
        } else {
            frac.min(999_999).saturating_mul(1000)
        };
        Some(Ok(Record {
            timestamp: Duration::new(u64::from(secs), nanos),
            original_len: orig.max(incl),
            data: &self.buf,
        }))
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[(&[u8], u32)]) -> Vec<u8> {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        f.extend_from_slice(&10u32.to_le_bytes()); // snaplen 10
        f.extend_from_slice(&1u32.to_le_bytes());
        for (d, orig) in records {
            f.extend_from_slice(&7u32.to_le_bytes());
            f.extend_from_slice(&5u32.to_le_bytes());
            f.extend_from_slice(&(d.len() as u32).to_le_bytes());
            f.extend_from_slice(&orig.to_le_bytes());
            f.extend_from_slice(d);
        }
        f
    }

    #[test]
    fn reads_truncated_records() {
        let f = file(&[(&[1; 10], 1500), (&[2; 3], 3)]);
        let mut r = PcapReader::new(&f[..]).unwrap();
        assert_eq!(r.header.linktype, 1);
        let a = r.next_record().unwrap().unwrap();
        assert_eq!((a.data.len(), a.original_len), (10, 1500));
        assert_eq!(a.timestamp, Duration::new(7, 5000));
        let b = r.next_record().unwrap().unwrap();
        assert_eq!(b.data, &[2, 2, 2]);
        assert!(r.next_record().is_none());
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let mut f = file(&[(&[1; 4], 4)]);
        f.truncate(f.len() - 1);
        let mut r = PcapReader::new(&f[..]).unwrap();
        assert!(matches!(r.next_record(), Some(Err(Error::TruncatedRecord))));
        let mut g = file(&[]);
        g.extend_from_slice(&[0; 8]);
        g.extend_from_slice(&u32::MAX.to_le_bytes());
        g.extend_from_slice(&[0; 4]);
        let mut r = PcapReader::new(&g[..]).unwrap();
        assert!(matches!(r.next_record(), Some(Err(Error::BadLength(_)))));
        assert!(PcapReader::new(&b"hello world, not a capture"[..]).is_err());
    }
}
