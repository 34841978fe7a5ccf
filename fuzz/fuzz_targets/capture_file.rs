//! A capture file handed to `awsvpc decap`: pcap (our reader) and pcapng (pcap-file's).
#![no_main]
use awsvpc::offline::{decap, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = Options {
        sources: Vec::new(),
        filter: None,
        ports: vec![4789],
        snaplen: None,
    };
    let _ = decap(data, std::io::sink(), &opts, "fuzz");
});
