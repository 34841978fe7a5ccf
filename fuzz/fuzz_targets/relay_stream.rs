//! The relay stream from a remote collector, read in arbitrary pieces through the unpacker
//! (plain or zlib) into the decoder, offered exactly as the transports do: the decoder must
//! never panic, never hand out a record beyond its bytes, stay in its fixed buffer, and the
//! pair must never stall (offered bytes are taken, or it fails).
#![no_main]
use awsvpc::relay::stream::{Decoder, Kind, Unpacker, HEADER_LEN, MAX_RECORD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // The first byte sets the read size, as pipe reads split a stream anywhere. The rest goes
    // in as a peer could send it: plain records, or "AWSVPCZ\x01" and a (mutated) zlib
    // stream of them, as `relay.py --zlib` writes.
    let step = usize::from(first).max(1) * 7;
    let wire = rest;
    // The smallest buffer the decoder allows: the same logic, without zeroing 4 MB per input.
    let mut d = Decoder::with_capacity(0);
    let mut u = Unpacker::new();
    let (mut at, mut end) = (0, 0);
    loop {
        if at == end && !u.has_more() {
            if end == wire.len() {
                return;
            }
            end = (end + step).min(wire.len());
        }
        let took = match u.feed(&wire[at..end], &mut d) {
            Ok(took) => took,
            Err(_) => return,
        };
        at += took;
        let mut moved = took > 0 || u.has_more();
        loop {
            match d.next_record() {
                Ok(Some(r)) => {
                    moved = true;
                    // A datagram of a batch (kind 4) or a record: never beyond the room
                    // the decoder guarantees.
                    assert!(r.payload().len() <= MAX_RECORD - HEADER_LEN);
                    if r.kind() == Kind::Datagram {
                        assert!(r.source().is_some());
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(moved || at == end, "the unpacker stalled at byte {at}");
    }
});
