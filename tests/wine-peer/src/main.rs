//! Plays Wireshark for Windows in the Wine tests (`tests/windows_wine.rs`): creates the
//! capture fifo and both control pipes as named pipes, the way extcap.c does, starts
//! `awsvpc.exe --capture` with them, saves what arrives on the fifo, and once the wanted
//! number of packets has arrived (or the time limit passed) ends awsvpc with
//! `TerminateProcess`, as Wireshark for Windows stops every extcap.
//!
//! `wine_pipe_peer OUT PACKETS LIMIT_SECS AWSVPC_EXE [ARGS…]`; prints `packets=N exit=…`.
//! With PACKETS 0 the peer ends awsvpc once the file `PEER_KILL_FILE` (a Windows path)
//! exists instead (the guardian test kills at the moment it chooses), or when awsvpc
//! exits first.

#[cfg(not(windows))]
fn main() {
    eprintln!("wine_pipe_peer runs on Windows (or under Wine) only");
    std::process::exit(2);
}

#[cfg(windows)]
fn main() {
    win::main()
}

#[cfg(windows)]
mod win {
    use std::ffi::OsStr;
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::windows::ffi::OsStrExt;
    use std::os::windows::io::{AsRawHandle, FromRawHandle};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::System::Pipes::{ConnectNamedPipe, CreateNamedPipeW};
    use windows_sys::Win32::System::Threading::TerminateProcess;

    const PIPE_ACCESS_INBOUND: u32 = 1;
    const PIPE_ACCESS_OUTBOUND: u32 = 2;
    const PIPE_TYPE_BYTE: u32 = 0;
    const PIPE_WAIT: u32 = 0;

    fn pipe(name: &str, access: u32) -> File {
        let wide: Vec<u16> = OsStr::new(name).encode_wide().chain(Some(0)).collect();
        // SAFETY: a NUL-terminated name; default security; one instance, as Wireshark.
        let h = unsafe {
            CreateNamedPipeW(
                wide.as_ptr(),
                access,
                PIPE_TYPE_BYTE | PIPE_WAIT,
                1,
                65536,
                65536,
                0,
                std::ptr::null(),
            )
        };
        assert!(h != INVALID_HANDLE_VALUE, "CreateNamedPipe {name}");
        // SAFETY: a handle we own from here on.
        unsafe { File::from_raw_handle(h as _) }
    }

    fn connect(f: &File) {
        // SAFETY: a pipe handle we own; synchronous connect. A client that connected
        // first makes it fail with ERROR_PIPE_CONNECTED, which is success here.
        unsafe { ConnectNamedPipe(f.as_raw_handle() as HANDLE, std::ptr::null_mut()) };
    }

    /// Counts pcapng Enhanced Packet Blocks as they arrive (block type 6).
    fn count_epbs(buf: &[u8]) -> u64 {
        let mut off = 0;
        let mut n = 0;
        let le = buf.get(8..12) == Some(&[0x4d, 0x3c, 0x2b, 0x1a]);
        while off + 8 <= buf.len() {
            let word = |o: usize| {
                let b = [buf[o], buf[o + 1], buf[o + 2], buf[o + 3]];
                if le {
                    u32::from_le_bytes(b)
                } else {
                    u32::from_be_bytes(b)
                }
            };
            let (ty, len) = (word(off), word(off + 4) as usize);
            if len < 12 || off + len > buf.len() {
                break;
            }
            if ty == 6 {
                n += 1;
            }
            off += len;
        }
        n
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().collect();
        let (out, want, limit, exe) = (
            &args[1],
            args[2].parse::<u64>().unwrap(),
            args[3].parse::<u64>().unwrap(),
            &args[4],
        );
        let tag = std::process::id();
        let names = [
            format!(r"\\.\pipe\wireshark_extcap_awsvpc_{tag}_fifo"),
            format!(r"\\.\pipe\wireshark_control_ext_to_ws_{tag}"),
            format!(r"\\.\pipe\wireshark_control_ws_to_ext_{tag}"),
        ];
        let fifo = pipe(&names[0], PIPE_ACCESS_INBOUND);
        let ctl_out = pipe(&names[1], PIPE_ACCESS_INBOUND);
        let ctl_in = pipe(&names[2], PIPE_ACCESS_OUTBOUND);
        let mut child = std::process::Command::new(exe)
            .args(&args[5..])
            .args([
                "--fifo",
                &names[0],
                "--extcap-control-out",
                &names[1],
                "--extcap-control-in",
                &names[2],
            ])
            .spawn()
            .expect("start awsvpc.exe");
        let packets = Arc::new(AtomicU64::new(0));
        let data = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let (p, d) = (packets.clone(), data.clone());
        std::thread::spawn(move || {
            let mut fifo = fifo;
            connect(&fifo);
            let mut buf = [0u8; 65536];
            while let Ok(n) = fifo.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut all = d.lock().unwrap();
                all.extend_from_slice(&buf[..n]);
                p.store(count_epbs(&all), Ordering::SeqCst);
            }
        });
        std::thread::spawn(move || {
            let mut c = ctl_out;
            connect(&c);
            let mut sink = Vec::new();
            let _ = c.read_to_end(&mut sink);
        });
        std::thread::spawn(move || {
            let mut c = ctl_in;
            connect(&c);
            // What Wireshark sends once its toolbar is ready: Initialized, control 0.
            let _ = c.write_all(&[0x54, 0, 0, 2, 0, 0]);
            std::thread::sleep(Duration::from_secs(3600));
        });
        let deadline = Instant::now() + Duration::from_secs(limit);
        let mut exited = None;
        let kill_file = std::env::var_os("PEER_KILL_FILE").map(std::path::PathBuf::from);
        let more = || match (&kill_file, want) {
            (Some(f), 0) => !f.exists(),
            _ => packets.load(Ordering::SeqCst) < want,
        };
        while more() && Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                exited = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if exited.is_none() {
            // SAFETY: the child's process handle, owned by `child`.
            unsafe { TerminateProcess(child.as_raw_handle() as HANDLE, 1) };
        }
        let _ = child.wait();
        std::fs::write(out, &*data.lock().unwrap()).expect("write the capture");
        println!(
            "packets={} exit={:?}",
            packets.load(Ordering::SeqCst),
            exited.map(|s| s.code())
        );
    }
}
