//! Frames on the toolbar's control pipe: the reader must never panic or allocate beyond
//! Wireshark's frame limit.
#![no_main]
use awsvpc::extcap::control::{encode, read_frame, Command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok(f) = read_frame(&mut r) {
        assert!(f.payload.len() <= 65_535);
        if let Some(c) = Command::from_u8(f.command) {
            let again = encode(f.control, c, &f.payload);
            assert_eq!(read_frame(&mut &again[..]).unwrap().payload, f.payload);
        }
    }
});
