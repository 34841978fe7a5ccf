//! What differs by operating system, behind one small interface each (the quinn-udp
//! pattern: a file per OS and a portable fallback). The rest of awsvpc names no OS.

mod children;

pub use children::end_children;
pub mod guardian;
