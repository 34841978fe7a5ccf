//! Decapsulation + pcapng write throughput, from memory, against a plain pcapng copy of the
//! same inner frames measured in the same run. `cargo bench --bench decap`.

use awsvpc::collector::local::{Batch, BATCH};
use awsvpc::pipeline::{Counters, Pipeline};
use awsvpc::sink::pcapng::PcapngSink;
use awsvpc::sources::{parse_source_map, SourceTable};
use std::hint::black_box;
use std::io::{BufWriter, Sink};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENI: [u8; 6] = [2, 0x85, 0x69, 0xc2, 0xab, 2];

/// An inner Ethernet/IPv4/UDP frame of exactly `len` bytes, alternately in and out.
fn frame(len: usize, outbound: bool) -> Vec<u8> {
    let other = [2, 0x29, 0x23, 0x74, 0xc7, 0x7d];
    let (src, dst) = if outbound { (ENI, other) } else { (other, ENI) };
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (ip_len >> 8) as u8,
        ip_len as u8,
        0,
        0,
        0,
        0,
        64,
        17,
        0,
        0,
    ]);
    f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
    let udp_len = ip_len - 20;
    f.extend_from_slice(&[0x30, 0x39, 0, 53, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
    f.resize(len, 0xab);
    f
}

fn vxlan(inner: &[u8]) -> Vec<u8> {
    let mut v = vec![0x08, 0, 0, 0, 0x54, 0xfa, 0x11, 0];
    v.extend_from_slice(inner);
    v
}

fn sink() -> BufWriter<Sink> {
    BufWriter::with_capacity(1 << 20, std::io::sink())
}

/// Best of `rounds` timings of `f`, which handles `n` packets per call.
fn measure(rounds: usize, n: u64, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    n as f64 / best.as_secs_f64() / 1e6
}

fn main() {
    let src = IpAddr::V4(Ipv4Addr::new(172, 31, 0, 238));
    let ts = Duration::from_secs(1_700_000_000);
    println!(
        "{:>6}  {:>14}  {:>14}  {:>6}",
        "bytes", "decap Mpps", "copy Mpps", "ratio"
    );
    for len in [64usize, 1500] {
        let frames: Vec<Vec<u8>> = (0..BATCH).map(|i| frame(len, i % 2 == 0)).collect();
        let datagrams: Vec<Vec<u8>> = frames.iter().map(|f| vxlan(f)).collect();
        let mut batch = Batch::new();
        batch.fill_from(datagrams.iter().map(|d| (&d[..], src, ts)));
        let batches = 20_000u64;
        let n = batches * BATCH as u64;

        let mut pipeline = Pipeline {
            sink: PcapngSink::new(sink(), "bench").unwrap(),
            sources: SourceTable::new(
                parse_source_map("5569041=eni-0abc,02:85:69:c2:ab:02").unwrap(),
                None,
            ),
            filter: None,
            snaplen: None,
            counters: Arc::new(Counters::default()),
            reported_drops: 0,
            local: Default::default(),
        };
        let decap = measure(5, n, || {
            for _ in 0..batches {
                pipeline.process(black_box(&batch)).unwrap();
            }
        });

        // Baseline: the same inner frames, read from the same batch slots and written as
        // EPBs with the same flags, without decapsulation, routing or direction.
        let mut plain = PcapngSink::new(sink(), "bench").unwrap();
        plain
            .add_interface(&awsvpc::sink::pcapng::NewInterface {
                name: "eni-0abc",
                description: "baseline",
                mac: Some(ENI),
                snaplen: 0,
                filter: None,
            })
            .unwrap();
        let copy = measure(5, n, || {
            for _ in 0..batches {
                for i in 0..batch.len() {
                    let (d, _, ts, _) = batch.get(i);
                    let f = &black_box(d)[8..];
                    let flags = if i % 2 == 0 { 2 } else { 1 };
                    plain
                        .write_packet(0, ts, f, f.len(), Some(flags), 0)
                        .unwrap();
                }
            }
        });
        println!(
            "{len:>6}  {decap:>14.2}  {copy:>14.2}  {:>6.2}",
            decap / copy
        );
    }
}
