//! What differs by operating system, behind one small interface each (the quinn-udp
//! pattern: a file per OS and a portable fallback). The rest of awsvpc names no OS.
//!
//! - Wireshark's pipes (`unix.rs`: fifos; `windows.rs`: named pipes): whether a path or an
//!   open file is a pipe, opening one without blocking, waiting until one takes more bytes,
//!   noticing that its reader left, the signals that stop a capture.
//! - The local collector's receive path (`udp_linux.rs`: `recvmmsg` with kernel timestamps
//!   and the drop counter; `udp_portable.rs`: everywhere else).
//! - libpcap for capture filters (`bpf_unix.rs`: linked; `bpf_windows.rs`: Npcap's DLL).
//! - Per-user folders (`dirs.rs`).
//! - File facts (`fs_unix.rs`: file types, inodes, owners, symlinks; `fs_portable.rs`).
//! - Descendants left at exit (`children.rs`) and the guardian's process (`guardian*.rs`).

#[cfg(unix)]
mod bpf_unix;
#[cfg(windows)]
mod bpf_windows;
mod children;
pub mod dirs;
#[cfg(not(unix))]
mod fs_portable;
#[cfg(unix)]
mod fs_unix;
pub mod guardian;
#[cfg(target_os = "linux")]
mod udp_linux;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;
// Also built for tests on Linux, so that its test runs on this machine.
#[cfg(any(not(target_os = "linux"), test))]
#[cfg_attr(target_os = "linux", allow(dead_code))]
mod udp_portable;

pub use children::{caller_library, end_children};
#[cfg(unix)]
pub use unix::*;
#[cfg(windows)]
pub use windows::*;

/// The local collector's socket: one interface, a file per OS.
pub mod udp {
    #[cfg(target_os = "linux")]
    pub use super::udp_linux::*;
    #[cfg(not(target_os = "linux"))]
    pub use super::udp_portable::*;
}
pub use udp::UdpReceiver;

/// What a file is and how it is created, as far as the OS tells.
pub mod fs {
    #[cfg(not(unix))]
    pub use super::fs_portable::*;
    #[cfg(unix)]
    pub use super::fs_unix::*;

    /// What a path is; `Display` is its name in a sentence.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FileKind {
        Folder,
        File,
        Fifo,
        CharDevice,
        BlockDevice,
        Socket,
        /// Anything else, or what this OS cannot tell apart.
        Special,
    }

    impl std::fmt::Display for FileKind {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                FileKind::Folder => "folder",
                FileKind::File => "file",
                FileKind::Fifo => "fifo",
                FileKind::CharDevice => "character device",
                FileKind::BlockDevice => "block device",
                FileKind::Socket => "socket",
                FileKind::Special => "special file",
            })
        }
    }

    pub fn kind(ft: &std::fs::FileType) -> FileKind {
        if ft.is_dir() {
            FileKind::Folder
        } else if ft.is_file() {
            FileKind::File
        } else {
            special_kind(ft)
        }
    }
}

/// libpcap's BPF compiler and interpreter: linked on Unix, Npcap's DLL on Windows.
pub mod bpf {
    #[cfg(unix)]
    pub use super::bpf_unix::*;
    #[cfg(windows)]
    pub use super::bpf_windows::*;
}

/// Why a path cannot be one of Wireshark's pipes.
#[derive(Debug)]
pub enum NotAPipe {
    Missing,
    /// It exists and is something else ("a regular file").
    Other(&'static str),
    Unexaminable(std::io::Error),
}

impl std::fmt::Display for NotAPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotAPipe::Missing => write!(f, "does not exist"),
            NotAPipe::Other(kind) => write!(f, "is {kind}, not {PIPE_KIND}"),
            NotAPipe::Unexaminable(e) => write!(f, "cannot be examined ({e})"),
        }
    }
}
