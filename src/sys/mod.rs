//! What differs by operating system, behind one small interface each (the quinn-udp
//! pattern: a file per OS and a portable fallback). The rest of awsvpc names no OS.

mod children;
/// Wireshark's pipes: whether a path or an open file is a pipe, opening one without
/// blocking, waiting until one takes more bytes, noticing that its reader left. Only Unix
/// (fifos) is implemented; a Windows version (named pipes) would provide the same functions.
#[cfg(unix)]
mod unix;

pub use children::end_children;
pub mod guardian;
#[cfg(unix)]
pub use unix::*;
