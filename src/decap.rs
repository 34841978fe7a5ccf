//! From a mirror datagram to an inner Ethernet frame: VXLAN (or GENEVE-wrapped VXLAN, as a
//! Gateway Load Balancer target receives it) is validated and stripped, the frame is keyed by
//! its mirror source, and its original length and direction are recovered.

use crate::wire::{ethernet, geneve, ip, udp, vxlan, WireError};
use std::net::IpAddr;

/// A mirror source as the collector sees it: AWS sends each session's packets from the
/// source ENI's primary IP with the session's VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    pub ip: IpAddr,
    pub vni: u32,
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "vni-{}@{}", self.vni, self.ip)
    }
}

/// pcapng `epb_flags` direction, seen from the mirrored ENI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    #[inline]
    pub fn epb_flags(self) -> u32 {
        match self {
            Direction::Inbound => 0b01,
            Direction::Outbound => 0b10,
        }
    }

    /// AWS mirrors the frame as the ENI saw it: its own MAC is the destination of what it
    /// receives and the source of what it sends (verified on a real mirror capture).
    #[inline]
    pub fn from_macs(frame: &ethernet::Frame<'_>, eni_mac: &ethernet::MacAddr) -> Option<Self> {
        if frame.dst() == *eni_mac {
            Some(Direction::Inbound)
        } else if frame.src() == *eni_mac {
            Some(Direction::Outbound)
        } else {
            None
        }
    }
}

/// An inner frame, borrowed from the datagram it arrived in.
#[derive(Debug, Clone, Copy)]
pub struct Inner<'a> {
    pub source: SourceKey,
    pub frame: ethernet::Frame<'a>,
}

impl<'a> Inner<'a> {
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        self.frame.as_bytes()
    }

    /// The frame's length on the wire. AWS truncates to the session's PacketLength (or the
    /// target's MTU) without saying how long the frame was, so the IP header's own length
    /// is the best evidence; it is trusted only when it exceeds what arrived (a shorter
    /// claim means padding or a lie, and the captured bytes are then the truth).
    #[inline]
    pub fn original_len(&self) -> usize {
        let captured = self.data().len();
        match self.frame.wire_len_from_ip() {
            Some(n) if n > captured => n.min(MAX_FRAME),
            _ => captured,
        }
    }
}

/// Largest frame an original length may claim: the IP length fields can say at most this.
const MAX_FRAME: usize = 14 + 16 + 40 + 65_535;

/// Decapsulates one mirror datagram (the UDP payload) received from `outer_src`.
/// `geneve` selects GENEVE unwrapping (UDP 6081, a GWLB target); otherwise it is VXLAN.
#[inline]
pub fn decapsulate(
    outer_src: IpAddr,
    geneve: bool,
    payload: &[u8],
) -> Result<Inner<'_>, WireError> {
    if geneve {
        return decapsulate_geneve(payload);
    }
    let vx = vxlan::Packet::new_checked(payload)?;
    let frame = ethernet::Frame::new_checked(vx.payload())
        .map_err(|_| WireError::Truncated("inner Ethernet"))?;
    Ok(Inner {
        source: SourceKey {
            ip: outer_src,
            vni: vx.vni(),
        },
        frame,
    })
}

/// GWLB wraps the mirror's whole IP/UDP/VXLAN packet in GENEVE; the mirror source is the
/// inner IP source, not the load balancer.
fn decapsulate_geneve(payload: &[u8]) -> Result<Inner<'_>, WireError> {
    let g = geneve::Packet::new_checked(payload)?;
    let ip_bytes = match g.protocol() {
        0x6558 => {
            let eth = ethernet::Frame::new_checked(g.payload())?;
            let (ty, off) = eth
                .l3()
                .ok_or(WireError::Truncated("GENEVE inner Ethernet"))?;
            if ty != ethernet::ETHERTYPE_IPV4 && ty != ethernet::ETHERTYPE_IPV6 {
                return Err(WireError::Malformed("GENEVE carries no IP packet"));
            }
            &eth.as_bytes()[off..]
        }
        0x0800 | 0x86dd => g.payload(),
        _ => return Err(WireError::Malformed("GENEVE carries an unknown protocol")),
    };
    let (src, udp) = outer_udp(ip_bytes)?;
    if udp.dst_port() == geneve::PORT {
        return Err(WireError::Malformed("GENEVE nested in GENEVE"));
    }
    decapsulate(src, false, udp.payload())
}

/// Parses an IP packet down to its UDP header: the outer headers of a captured mirror packet.
pub fn outer_udp(ip_bytes: &[u8]) -> Result<(IpAddr, udp::Packet<'_>), WireError> {
    let pkt = ip::Packet::new_checked(ip_bytes)?;
    if pkt.protocol() != ip::PROTO_UDP {
        return Err(WireError::Malformed("not UDP"));
    }
    Ok((pkt.src(), udp::Packet::new_checked(pkt.payload())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn vx(vni: u32, inner: &[u8]) -> Vec<u8> {
        let mut v = vec![0x08, 0, 0, 0];
        v.extend_from_slice(&(vni << 8).to_be_bytes());
        v.extend_from_slice(inner);
        v
    }

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));

    #[test]
    fn truncated_frame_gets_ip_length() {
        let mut inner = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        inner.extend_from_slice(&[0x45, 0, 0x05, 0xdc]); // total length 1500
        let d = vx(7, &inner);
        let i = decapsulate(SRC, false, &d).unwrap();
        assert_eq!(i.source, SourceKey { ip: SRC, vni: 7 });
        assert_eq!(i.data().len(), 18);
        assert_eq!(i.original_len(), 1514);
    }

    #[test]
    fn padded_frame_keeps_captured_length() {
        let mut inner = vec![0u8; 12];
        inner.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28]);
        inner.resize(60, 0);
        let d = vx(1, &inner);
        assert_eq!(decapsulate(SRC, false, &d).unwrap().original_len(), 60);
    }

    #[test]
    fn short_inner_frame_is_malformed() {
        let d = vx(1, &[1, 2, 3]);
        assert!(decapsulate(SRC, false, &d).is_err());
    }

    #[test]
    fn direction_from_macs() {
        let mac = [2, 0x85, 0x69, 0xc2, 0xab, 2];
        let mut f = mac.to_vec();
        f.extend_from_slice(&[9; 6]);
        f.extend_from_slice(&[0x08, 0]);
        let fr = ethernet::Frame::new_checked(&f).unwrap();
        assert_eq!(Direction::from_macs(&fr, &mac), Some(Direction::Inbound));
        let mut g = [9u8; 6].to_vec();
        g.extend_from_slice(&mac);
        g.extend_from_slice(&[0x08, 0]);
        let fr = ethernet::Frame::new_checked(&g).unwrap();
        assert_eq!(Direction::from_macs(&fr, &mac), Some(Direction::Outbound));
        assert_eq!(Direction::from_macs(&fr, &[1; 6]), None);
    }
}
