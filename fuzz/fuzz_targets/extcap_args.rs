//! The argv Wireshark builds (NUL-separated here): the lenient parser and the capture
//! configuration must turn anything into a step or one sentence, never a panic.
#![no_main]
use awsvpc::config::CaptureConfig;
use awsvpc::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let argv: Vec<String> = data
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let args = awsvpc::extcap::parse_argv(&argv);
    let _ = args.step();
    if let Err(e) = CaptureConfig::from_args(&args, Manifest::load()) {
        let e = e.to_string();
        assert!(!e.contains('\n'), "one line: {e}");
    }
    let _ = awsvpc::sources::parse_source_map(&String::from_utf8_lossy(data));
});
