//! `awsvpc decap` on real captures from ../shared/testdata, checked against independent
//! oracles: etherparse for the encapsulation, tshark for inner checksums, tcpdump for the
//! capture filter.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn decap(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run(Command::new(bin())
        .arg("decap")
        .arg(input)
        .arg("-w")
        .arg(out)
        .args(extra))
}

/// The inner frames of a raw mirror capture, found with etherparse (not awsvpc's code).
fn etherparse_inner_frames(path: &Path) -> Vec<Vec<u8>> {
    read_capture_frames(path)
        .into_iter()
        .filter_map(|f| {
            let p = etherparse::SlicedPacket::from_ethernet(&f).ok()?;
            match p.transport? {
                etherparse::TransportSlice::Udp(u) if u.destination_port() == 4789 => {
                    Some(u.payload()[8..].to_vec())
                }
                _ => None,
            }
        })
        .collect()
}

const REAL_MAC: &str = "02:85:69:c2:ab:02";

#[test]
fn real_aws_mirror_gives_100_frames_with_directions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("clean.pcapng");
    let input = testdata("aws-mirror-real.pcap");
    let o = decap(
        &input,
        &out,
        &["--source", &format!("5569041=eni-0abc,{REAL_MAC}")],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("100 frames written"), "{summary}");
    let pcap = read_pcapng(&std::fs::read(&out).unwrap());
    assert_eq!(pcap.interfaces, vec!["eni-0abc"]);
    assert_eq!(pcap.frames.len(), 100);
    let outbound = pcap.frames.iter().filter(|f| f.1 == Some(2)).count();
    let inbound = pcap.frames.iter().filter(|f| f.1 == Some(1)).count();
    assert_eq!((outbound, inbound), (47, 53));
    let oracle = etherparse_inner_frames(&input);
    let ours: Vec<Vec<u8>> = pcap.frames.iter().map(|f| f.3.clone()).collect();
    assert_eq!(
        ours, oracle,
        "inner frames equal etherparse's decapsulation"
    );
    for f in &pcap.frames {
        assert_eq!(f.2 as usize, f.3.len(), "no truncation in this capture");
    }
}

#[test]
fn real_aws_mirror_inner_checksums_valid_per_tshark() {
    if !system_ready(&["tshark"], false) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("clean.pcapng");
    assert!(decap(&testdata("aws-mirror-real.pcap"), &out, &[])
        .status
        .success());
    let o = run(Command::new("tshark")
        .arg("-r")
        .arg(&out)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ])
        .args([
            "-T",
            "fields",
            "-e",
            "ip.checksum.status",
            "-e",
            "tcp.checksum.status",
            "-e",
            "udp.checksum.status",
        ]));
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.lines().count(), 100);
    // Status 1 = good, 2 = bad (Wireshark's proto_checksum_status).
    assert!(
        !text.split_whitespace().any(|s| s == "2"),
        "bad checksum: {text}"
    );
    assert!(
        text.lines()
            .all(|l| l.split_whitespace().next() == Some("1")),
        "{text}"
    );
}

#[test]
fn other_testdata_decode() {
    let dir = tempfile::tempdir().unwrap();
    for (file, frames, sources) in [
        ("vxlan-encapsulated-http.pcap", 12, 1),
        ("vxlan-small.pcap", 10, 2),
        ("geneve-vxlan-dns-truncated.pcap", 2, 1),
    ] {
        let out = dir.path().join(format!("{file}.pcapng"));
        let o = decap(&testdata(file), &out, &[]);
        assert!(
            o.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let p = read_pcapng(&std::fs::read(&out).unwrap());
        assert_eq!(p.frames.len(), frames, "{file}");
        assert_eq!(p.interfaces.len(), sources, "{file}: {:?}", p.interfaces);
        if file.starts_with("geneve") {
            // Truncated DNS: the original length comes from the inner IPv4 total length.
            for f in &p.frames {
                let ip_total = u16::from_be_bytes([f.3[16], f.3[17]]) as u32;
                assert_eq!(f.2, 14 + ip_total);
                assert!(
                    f.2 as usize > f.3.len(),
                    "truncated frames keep their original length"
                );
            }
            assert_eq!(
                p.interfaces,
                vec!["vni-4242@127.0.0.1"],
                "the mirror source inside GENEVE"
            );
        }
    }
}

#[test]
fn files_that_are_not_mirror_captures_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "this is not a capture\n").unwrap();
    let out = dir.path().join("out.pcapng");
    let o = decap(&junk, &out, &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not a pcap or pcapng capture"), "{err}");
    assert!(!out.exists(), "no output left behind");
    // A real capture with no VXLAN in it: decapsulated output fed back in.
    let clean = dir.path().join("clean.pcapng");
    assert!(decap(&testdata("vxlan-small.pcap"), &clean, &[])
        .status
        .success());
    let o = decap(&clean, &out, &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no VXLAN on UDP 4789"), "{err}");
    let o = decap(
        &testdata("vxlan-small.pcap"),
        &out,
        &["--source", "123=eni-1,zz"],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("six hex bytes"));
}

/// The offline filter against tcpdump on the same inner frames.
#[test]
fn filter_matches_tcpdump() {
    if !system_ready(&["tcpdump"], false) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.pcapng");
    let input = testdata("aws-mirror-real.pcap");
    assert!(decap(&input, &all, &[]).status.success());
    for filter in [
        "udp port 53",
        "tcp port 22",
        "host 172.31.0.2",
        "udp and not port 123",
        "greater 200",
        "tcp[tcpflags] & tcp-push != 0",
    ] {
        let ours = dir.path().join("ours.pcapng");
        let o = decap(&input, &ours, &["--filter", filter]);
        let theirs = dir.path().join("theirs.pcap");
        let t = run(Command::new("tcpdump")
            .arg("-r")
            .arg(&all)
            .arg("-w")
            .arg(&theirs)
            .arg(filter));
        assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
        let expected = read_capture_frames(&theirs);
        if expected.is_empty() {
            assert!(!o.status.success() || read_capture_frames(&ours).is_empty());
            continue;
        }
        assert!(
            o.status.success(),
            "{filter}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(read_capture_frames(&ours), expected, "filter {filter}");
    }
}

/// Rewrites the real AWS capture's outer headers into the other forms tcpdump writes on
/// Linux (cooked v1/v2, raw IP) and into outer IPv6, and checks the same 100 inner frames
/// come out of each.
#[test]
fn linux_link_types_and_outer_ipv6_decode_the_same() {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::DataLink;
    let input = testdata("aws-mirror-real.pcap");
    let originals = read_capture_frames(&input);
    let expected = etherparse_inner_frames(&input);
    let dir = tempfile::tempdir().unwrap();

    type Rewrite = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let variants: Vec<(&str, DataLink, Rewrite)> = vec![
        (
            "sll",
            DataLink::LINUX_SLL,
            Box::new(|f: &[u8]| {
                let mut v = vec![
                    0, 0, 0, 1, 0, 6, 6, 0x1d, 0x3c, 0x34, 0xd0, 0x77, 0, 0, 0x08, 0x00,
                ];
                v.extend_from_slice(&f[14..]);
                v
            }),
        ),
        (
            "sll2",
            DataLink::LINUX_SLL2,
            Box::new(|f: &[u8]| {
                let mut v = vec![
                    0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 6, 0x1d, 0x3c, 0x34, 0xd0, 0x77, 0, 0,
                ];
                v.extend_from_slice(&f[14..]);
                v
            }),
        ),
        ("raw", DataLink::RAW, Box::new(|f: &[u8]| f[14..].to_vec())),
        (
            "ipv6",
            DataLink::ETHERNET,
            Box::new(|f: &[u8]| {
                // Outer IPv6 (documentation prefix) carrying the same UDP datagram.
                let ip4 = &f[14..];
                let udp = &ip4[usize::from(ip4[0] & 0x0f) * 4..];
                let mut v = f[..12].to_vec();
                v.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
                v.extend_from_slice(&(udp.len() as u16).to_be_bytes());
                v.extend_from_slice(&[17, 255]);
                v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
                v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
                v.extend_from_slice(udp);
                v
            }),
        ),
    ];
    for (name, link, rewrite) in variants {
        let path = dir.path().join(format!("{name}.pcap"));
        let header = PcapHeader {
            datalink: link,
            ..Default::default()
        };
        let mut w = PcapWriter::with_header(std::fs::File::create(&path).unwrap(), header).unwrap();
        for f in &originals {
            let data = rewrite(f);
            w.write_packet(&PcapPacket::new(
                std::time::Duration::from_secs(1),
                data.len() as u32,
                &data,
            ))
            .unwrap();
        }
        drop(w);
        let out = dir.path().join(format!("{name}.pcapng"));
        let o = decap(
            &path,
            &out,
            &["--source", &format!("5569041=eni-0abc,{REAL_MAC}")],
        );
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got = read_pcapng(&std::fs::read(&out).unwrap());
        let frames: Vec<Vec<u8>> = got.frames.iter().map(|f| f.3.clone()).collect();
        assert_eq!(frames, expected, "{name}");
        let src = if name == "ipv6" {
            "2001:db8::1"
        } else {
            "172.31.0.238"
        };
        let summary = String::from_utf8_lossy(&o.stdout);
        assert!(
            summary.contains("47 outbound, 53 inbound"),
            "{name}: {summary}"
        );
        if name == "ipv6" {
            assert!(got.frames.iter().all(|f| f.0 == 0));
            let p = std::process::Command::new(bin())
                .arg("decap")
                .arg(&path)
                .arg("-w")
                .arg(&out)
                .output()
                .unwrap();
            assert!(String::from_utf8_lossy(&p.stdout).contains(&format!("vni-5569041@{src}")));
        }
    }
}
