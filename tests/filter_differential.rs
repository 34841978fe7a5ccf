//! Differential test of the capture filter against libpcap's own tool: for every filter,
//! the frames `awsvpc decap --filter F` writes equal what `tcpdump -r <all inner frames> F`
//! keeps, byte for byte and in order. The inputs are the real captures in
//! ../shared/testdata and a synthetic one in the testbed's addressing with what those lack:
//! IPv6, VLAN tags, ICMPv6, SCTP, GRE, IPv4 and IPv6 fragments, an extension header.
//!
//! The same loop checks narrowing: every frame tcpdump keeps is one AWS mirrors under the
//! rules `narrow` derives from the filter (the same rules serve both directions).

#[path = "oracle/aws_rules.rs"]
mod aws_rules;
mod common;
use aws_rules::aws_mirrors;
use awsvpc::narrow::{narrow, Action, Cidr, Rule};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const FILTERS: &[&str] = &[
    // host
    "host 172.31.0.2",
    "host 192.0.2.2",
    "src host 192.0.2.1",
    "dst host 172.31.0.238",
    "host 2001:db8::2",
    "ip6 host 2001:db8::1",
    "src or dst host 10.0.0.1",
    "host 10.0.0.1 or 10.0.0.2",
    "host 192.0.2.1 and not 192.0.2.2",
    "host 54.86.237.188 || host 1.1.1.1",
    // net
    "net 172.31.0.0/16",
    "net 10.0.0.0/8",
    "src net 172.31.0.0/20",
    "dst net 18.196.0.0 mask 255.255.0.0",
    "net 2001:db8::/32",
    "ip6 dst net 2001:db8::/64",
    "net 172.16",
    "src and dst net 192.0.2.0/24",
    // port, portrange
    "port 53",
    "port 22",
    "udp port 53",
    "tcp port 8080",
    "tcp dst port 80",
    "udp src port 53",
    "port 123 or 53",
    "tcp port 22 or 80",
    "src port 22",
    "dst port 9999",
    "dst port 8081 or src port 8081",
    "portrange 1-1023",
    "tcp portrange 8000-8100",
    "udp dst portrange 50-60",
    "portrange 40000-65535",
    "sctp port 80",
    // protocols
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "ip",
    "ip6",
    "sctp",
    "ip6 and udp",
    "ip6 and tcp",
    "ip proto 47",
    "ip6 proto 58",
    "ip6 proto 44",
    "ip6 proto 0",
    "proto \\udp",
    "icmp or icmp6",
    // vlan
    "vlan",
    "vlan 100",
    "vlan and tcp",
    "vlan and ip6",
    "not vlan",
    // tcp flags and other byte loads
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[tcpflags] & tcp-fin != 0",
    "tcp[tcpflags] & tcp-push != 0 and port 22",
    "icmp[icmptype] == icmp-echo",
    "icmp6 and ip6[40] == 128",
    "ip[6:2] & 0x1fff != 0",
    "ip[6] & 0x20 != 0",
    // lengths
    "greater 200",
    "less 100",
    "greater 1000 and tcp",
    "len <= 80",
    // and/or/not, src/dst
    "not tcp",
    "not port 22",
    "tcp and not port 22",
    "udp and not port 123",
    "not host 172.31.0.238 and not arp",
    "host 172.31.0.2 and udp port 53",
    "(tcp or udp) and host 192.0.2.2",
    "tcp or udp port 53 and host 172.31.0.2",
    "ip and not ip6",
    "ip6 and not icmp6",
    "src 192.0.2.1 and dst port 8080",
    "udp and (port 53 or port 123)",
    "tcp && !port 22",
    // link layer
    "arp",
    "ether host 02:00:c0:00:02:01",
    "ether src 02:85:69:c2:ab:02",
    "ether broadcast",
];

const ENI: [u8; 6] = [2, 0, 0xc0, 0, 2, 1];
const PEER: [u8; 6] = [2, 0, 0xc0, 0, 2, 2];
const A4: [u8; 4] = [192, 0, 2, 1];
const B4: [u8; 4] = [192, 0, 2, 2];

fn a6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[15] = last;
    a
}

fn eth(src: [u8; 6], dst: [u8; 6], vlan: Option<u16>, ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, body: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + body.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0x43, 0x21]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let sum = h
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(body);
    h
}

fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, body: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(body);
    h
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: usize) -> Vec<u8> {
    let mut h = sport.to_be_bytes().to_vec();
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 1, 0, 0, 0, 2, 0, 0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    h.extend((0..payload).map(|i| (i % 251) as u8));
    h
}

fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut h = sport.to_be_bytes().to_vec();
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend((0..payload).map(|i| (i % 251) as u8));
    h
}

fn icmp(kind: u8, payload: usize) -> Vec<u8> {
    let mut h = vec![kind, 0, 0, 0, 0x12, 0x34, 0, 1];
    h.extend((0..payload).map(|i| i as u8));
    h
}

/// IPv6 fragment header before `body` (`offset` in 8-byte units, `more` fragments follow).
fn frag6(next: u8, offset: u16, more: bool, body: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x56, 0x78]);
    h.extend_from_slice(body);
    h
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;

/// Inner frames like the namespace testbed's (tests/testbed): the "ENI" 192.0.2.1 /
/// 2001:db8::1 talking to HTTP on 8080/8081, DNS on 53 and an echo service on 9999.
fn testbed_like_frames() -> Vec<Vec<u8>> {
    let v4 = |src, dst, from, to, proto, frag, body: Vec<u8>| {
        eth(from, to, None, 0x0800, &ipv4(src, dst, proto, frag, &body))
    };
    let v6 = |src, dst, from, to, next, body: Vec<u8>| {
        eth(from, to, None, 0x86dd, &ipv6(src, dst, next, &body))
    };
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&ENI);
    arp.extend_from_slice(&A4);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&B4);
    let big_udp = udp(40001, 9999, 1400);
    vec![
        eth(ENI, [0xff; 6], None, 0x0806, &arp),
        v4(A4, B4, ENI, PEER, 1, 0, icmp(8, 56)),
        v4(B4, A4, PEER, ENI, 1, 0, icmp(0, 56)),
        v4(A4, B4, ENI, PEER, 6, 0x4000, tcp(40000, 8080, SYN, 0)),
        v4(B4, A4, PEER, ENI, 6, 0x4000, tcp(8080, 40000, SYN | ACK, 0)),
        v4(A4, B4, ENI, PEER, 6, 0x4000, tcp(40000, 8080, ACK, 0)),
        v4(
            A4,
            B4,
            ENI,
            PEER,
            6,
            0x4000,
            tcp(40000, 8080, PSH | ACK, 90),
        ),
        v4(
            B4,
            A4,
            PEER,
            ENI,
            6,
            0x4000,
            tcp(8080, 40000, PSH | ACK, 1200),
        ),
        v4(A4, B4, ENI, PEER, 6, 0x4000, tcp(40000, 8080, FIN | ACK, 0)),
        v4(A4, B4, ENI, PEER, 17, 0, udp(53000, 53, 30)),
        v4(B4, A4, PEER, ENI, 17, 0, udp(53, 53000, 46)),
        v4(A4, B4, ENI, PEER, 17, 0, udp(40001, 9999, 12)),
        // One UDP datagram in two IPv4 fragments.
        v4(A4, B4, ENI, PEER, 17, 0x2000, big_udp[..704].to_vec()),
        v4(A4, B4, ENI, PEER, 17, 88, big_udp[704..].to_vec()),
        v4(A4, B4, ENI, PEER, 132, 0, udp(5000, 80, 20)),
        v4(
            A4,
            B4,
            ENI,
            PEER,
            47,
            0,
            vec![0, 0, 0x08, 0, 0x45, 0, 0, 20],
        ),
        v6(a6(1), a6(2), ENI, PEER, 6, tcp(40002, 8081, SYN, 0)),
        v6(a6(2), a6(1), PEER, ENI, 6, tcp(8081, 40002, SYN | ACK, 0)),
        v6(a6(1), a6(2), ENI, PEER, 6, tcp(40002, 8081, PSH | ACK, 300)),
        v6(a6(1), a6(2), ENI, PEER, 17, udp(53001, 53, 30)),
        v6(a6(2), a6(1), PEER, ENI, 17, udp(53, 53001, 60)),
        v6(a6(1), a6(2), ENI, PEER, 58, icmp(128, 56)),
        v6(a6(2), a6(1), PEER, ENI, 58, icmp(129, 56)),
        // Neighbour solicitation from the link-local address.
        v6(
            {
                let mut a = [0u8; 16];
                a[..2].copy_from_slice(&[0xfe, 0x80]);
                a[15] = 1;
                a
            },
            {
                let mut a = [0u8; 16];
                a[..2].copy_from_slice(&[0xff, 0x02]);
                a[11] = 1;
                a[12] = 0xff;
                a[15] = 2;
                a
            },
            ENI,
            [0x33, 0x33, 0xff, 0, 0, 2],
            58,
            icmp(135, 20),
        ),
        // An IPv6 UDP datagram in two fragments, and ICMPv6 behind a hop-by-hop header.
        v6(
            a6(1),
            a6(2),
            ENI,
            PEER,
            44,
            frag6(17, 0, true, &big_udp[..704]),
        ),
        v6(
            a6(1),
            a6(2),
            ENI,
            PEER,
            44,
            frag6(17, 88, false, &big_udp[704..]),
        ),
        v6(a6(1), a6(2), ENI, PEER, 0, {
            let mut h = vec![58, 0, 5, 2, 0, 0, 1, 0];
            h.extend_from_slice(&icmp(143, 20));
            h
        }),
        // 802.1Q-tagged frames (VLAN 100).
        eth(
            ENI,
            PEER,
            Some(100),
            0x0800,
            &ipv4(A4, B4, 6, 0x4000, &tcp(40003, 8080, SYN, 0)),
        ),
        eth(
            ENI,
            PEER,
            Some(100),
            0x86dd,
            &ipv6(a6(1), a6(2), 17, &udp(53002, 53, 30)),
        ),
        eth(
            PEER,
            ENI,
            Some(200),
            0x0800,
            &ipv4(B4, A4, 1, 0, &icmp(0, 56)),
        ),
    ]
}

/// The synthetic frames as a mirror target would capture them: VXLAN on UDP 4789.
fn write_testbed_capture(path: &Path) {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for (i, inner) in testbed_like_frames().iter().enumerate() {
        let builder =
            etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
                .ipv4([198, 51, 100, 1], [198, 51, 100, 2], 64)
                .udp(49152 + i as u16, 4789);
        let payload = vxlan(4242, inner);
        let mut out = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut out, &payload).unwrap();
        w.write_packet(&PcapPacket::new(
            std::time::Duration::from_millis(1000 + i as u64),
            out.len() as u32,
            &out,
        ))
        .unwrap();
    }
}

fn decap(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run(Command::new(bin())
        .arg("decap")
        .arg(input)
        .arg("-w")
        .arg(out)
        .args(extra))
}

/// Whether the frame carries IPv4 or IPv6 (after any VLAN tags): all AWS ever mirrors.
fn is_ip(frame: &[u8]) -> bool {
    let mut off = 12;
    loop {
        match frame.get(off..off + 2) {
            Some([0x81, 0x00] | [0x88, 0xa8] | [0x91, 0x00]) => off += 4,
            Some([0x08, 0x00] | [0x86, 0xdd]) => return true,
            _ => return false,
        }
    }
}

#[test]
fn filters_match_tcpdump_and_narrowing_keeps_what_they_match() {
    if !system_ready(&["tcpdump"], false) {
        return;
    }
    assert!(FILTERS.len() >= 60);
    let dir = tempfile::tempdir().unwrap();
    let testbed = dir.path().join("testbed-like.pcap");
    write_testbed_capture(&testbed);
    let mut inputs: Vec<PathBuf> = [
        "aws-mirror-real.pcap",
        "vxlan-encapsulated-http.pcap",
        "vxlan-small.pcap",
        "geneve-vxlan-dns-truncated.pcap",
    ]
    .iter()
    .map(|f| testdata(f))
    .collect();
    inputs.push(testbed);

    // Per filter: whether some input gave a proper, non-empty subset.
    let mut proper = vec![false; FILTERS.len()];
    let (mut checked, mut excluded) = (0u64, 0u64);
    let narrowings: Vec<_> = FILTERS
        .iter()
        .map(|f| {
            [10, 6, 2].map(|budget| {
                narrow(Some(f), budget).unwrap_or_else(|e| panic!("{f} budget {budget}: {e}"))
            })
        })
        .collect();
    for input in &inputs {
        let name = input.file_name().unwrap().to_string_lossy().to_string();
        let all = dir.path().join(format!("{name}.all.pcapng"));
        let o = decap(input, &all, &[]);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let all_frames = read_capture_frames(&all);
        assert!(!all_frames.is_empty(), "{name}");
        for (i, filter) in FILTERS.iter().enumerate() {
            let ours = dir.path().join("ours.pcapng");
            let o = decap(input, &ours, &["--filter", filter]);
            assert!(
                o.status.success(),
                "{name} {filter}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let theirs = dir.path().join("theirs.pcap");
            let t = run(Command::new("tcpdump")
                .arg("-r")
                .arg(&all)
                .arg("-w")
                .arg(&theirs)
                .arg(filter));
            assert!(
                t.status.success(),
                "tcpdump {filter}: {}",
                String::from_utf8_lossy(&t.stderr)
            );
            let expected = read_capture_frames(&theirs);
            assert_eq!(
                read_capture_frames(&ours),
                expected,
                "{name}: filter {filter}"
            );
            proper[i] |= !expected.is_empty() && expected.len() < all_frames.len();

            for n in &narrowings[i] {
                for frame in expected.iter().filter(|f| is_ip(f)) {
                    checked += 1;
                    assert!(
                        aws_mirrors(&n.rules, frame),
                        "{name}: {filter} keeps {frame:02x?}, which the rules {:#?} do not mirror",
                        n.rules.iter().map(ToString::to_string).collect::<Vec<_>>()
                    );
                }
            }
            excluded += all_frames
                .iter()
                .filter(|f| is_ip(f) && !expected.contains(f))
                .filter(|f| !aws_mirrors(&narrowings[i][0].rules, f))
                .count() as u64;
        }
    }
    let proper_count = proper.iter().filter(|p| **p).count();
    let narrowed = narrowings.iter().filter(|n| !n[0].accept_all).count();
    eprintln!(
        "{} filters x {} inputs: {proper_count} select a proper non-empty subset somewhere; {narrowed} narrow at budget 10; {checked} kept frames mirrored; {excluded} dropped frames also left unmirrored",
        FILTERS.len(),
        inputs.len()
    );
    let vacuous: Vec<&str> = FILTERS
        .iter()
        .zip(&proper)
        .filter(|(_, p)| !**p)
        .map(|(f, _)| *f)
        .collect();
    assert!(
        proper_count >= 60,
        "too few filters discriminate: {vacuous:?}"
    );
    assert!(narrowed >= 40, "too few filters narrow");
    assert!(excluded > 0, "narrowing never left anything out");
}
