//! The relay stream from a remote collector, read in arbitrary pieces: the decoder must
//! never panic, never hand out a record beyond its bytes, and stay in its fixed buffer.
#![no_main]
use awsvpc::relay::stream::{Decoder, Kind, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, mut rest)) = data.split_first() else {
        return;
    };
    // The first byte sets the read size, as pipe reads split a stream anywhere.
    let step = usize::from(step).max(1) * 7;
    // The smallest buffer the decoder allows: the same logic, without zeroing 4 MB per input.
    let mut d = Decoder::with_capacity(0);
    while !rest.is_empty() {
        let space = d.space();
        assert!(!space.is_empty());
        let n = step.min(rest.len()).min(space.len());
        space[..n].copy_from_slice(&rest[..n]);
        d.filled(n);
        rest = &rest[n..];
        loop {
            match d.next_record() {
                Ok(Some(r)) => {
                    assert_eq!(r.payload().len(), r.length());
                    assert_eq!(r.total_len(), HEADER_LEN + r.length());
                    if r.kind() == Kind::Datagram {
                        assert!(r.source().is_some());
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
