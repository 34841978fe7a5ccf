//! Free loopback ports for the tests and benches (`#[path]`-included by the benches, so it
//! depends on nothing else in `tests/common`).
#![allow(dead_code)]

use std::net::{TcpListener, UdpSocket};

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
