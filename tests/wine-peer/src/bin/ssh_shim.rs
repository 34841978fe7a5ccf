//! Stands in for Windows' ssh.exe in the Wine tests, which this machine does not have:
//! Wine cannot give a Unix program (this machine's OpenSSH client) the pipes a Windows
//! parent makes, so this Windows program takes ssh's place and relays its argv, stdin and
//! stdout over loopback (`AWSVPC_TEST_SSH_BRIDGE`) to the test, which runs the real `ssh`
//! with them. awsvpc.exe's own side (spawning ssh, its pipes, the reader thread, the relay
//! protocol, the job object) is what runs on Windows; ssh itself is OpenSSH's.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

fn main() {
    let addr = std::env::var("AWSVPC_TEST_SSH_BRIDGE").expect("AWSVPC_TEST_SSH_BRIDGE");
    let mut s = TcpStream::connect(addr).expect("the test's ssh bridge");
    let args: Vec<String> = std::env::args().skip(1).collect();
    s.write_all(args.join("\0").as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut up = s.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 65536];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || up.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        // awsvpc closed ssh's stdin (the relay's source is complete): say so.
        let _ = up.shutdown(Shutdown::Write);
    });
    let mut stdout = std::io::stdout();
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || stdout.write_all(&buf[..n]).is_err() {
            break;
        }
        let _ = stdout.flush();
    }
}
