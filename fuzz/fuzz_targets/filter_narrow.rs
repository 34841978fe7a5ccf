//! A capture filter from the user (or any extcap caller) translated into mirror rules:
//! narrowing must never panic, stay within the rule budget and fail only for a budget that
//! cannot hold one rule per address family. The evaluator reads the rest as a frame.
#![no_main]
#[path = "../../tests/oracle/aws_rules.rs"]
mod aws_rules;
use aws_rules::aws_mirrors;
use awsvpc::narrow::{narrow, Action, Cidr, Rule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&b, rest)) = data.split_first() else {
        return;
    };
    let budget = usize::from(b % 12);
    let (text, frame) = rest.split_at(rest.iter().position(|x| *x == 0).unwrap_or(rest.len()));
    let filter = String::from_utf8_lossy(text);
    match narrow(Some(&filter), budget) {
        Ok(n) => {
            assert!(n.rules.len() <= budget);
            aws_mirrors(&n.rules, frame);
        }
        Err(e) => assert!(budget < 2, "{e}"),
    }
});
