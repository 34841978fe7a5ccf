//! A mirror datagram from anyone who can reach the collector's UDP port: decapsulation,
//! routing and pcapng writing must never panic, whatever the bytes.
#![no_main]
use awsvpc::collector::local::Batch;
use awsvpc::pipeline::{Counters, Pipeline};
use awsvpc::sink::pcapng::PcapngSink;
use awsvpc::sources::{parse_source_map, SourceTable};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

thread_local! {
    // A batch is 590 KB; allocating one per input would dominate the run.
    static BATCH: RefCell<Batch> = RefCell::new(Batch::new());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, mode));
    let mut p = Pipeline {
        sink: PcapngSink::new(Vec::new(), "fuzz").unwrap(),
        sources: SourceTable::new(
            parse_source_map("4242=eni-fuzz,02:00:c0:00:02:01").unwrap(),
            (mode & 0x40 != 0).then(|| vec![4242]),
        ),
        filter: None,
        snaplen: (mode & 0x20 != 0).then_some(u32::from(mode & 0x1f)),
        counters: Arc::new(Counters::default()),
        reported_drops: 0,
        local: Default::default(),
    };
    if mode & 0x80 != 0 {
        // Several datagrams in one batch, split at 0xff bytes.
        BATCH.with_borrow_mut(|b| {
            b.fill_from(rest.split(|x| *x == 0xff).map(|d| (d, src, Duration::ZERO)));
            p.process(b).unwrap();
        });
    } else {
        p.process_one(src, mode & 1 == 1, rest, Duration::ZERO)
            .unwrap();
    }
    if let Ok(inner) = awsvpc::decap::decapsulate(src, mode & 1 == 1, rest) {
        assert!(inner.original_len() >= inner.data().len());
        assert!(inner.data().len() <= rest.len());
    }
});
