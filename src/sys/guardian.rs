//! The guardian's process side, portable part: a detached copy of awsvpc (`awsvpc guard`)
//! that learns of this process's end by EOF on a pipe only this process can write, and the
//! one-byte protocol on it. What to do at EOF (the run's teardown) is `crate::aws::guardian`.
//!
//! Protocol, parent to guardian: `D` = "my own teardown finished, exit"; `C` + a u32 (LE)
//! pid = "end this child of mine if I die" (the system ssh). EOF without `D` = the parent
//! died. Any other byte is junk: the guardian logs it and exits without touching AWS.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Mutex;

#[cfg(unix)]
#[path = "guardian_unix.rs"]
mod platform;

#[cfg(windows)]
#[path = "guardian_windows.rs"]
mod platform;

pub use platform::{alive, close_inherited_fds};

pub const DONE: u8 = b'D';
pub const CHILD: u8 = b'C';

struct State {
    writer: Option<std::io::PipeWriter>,
    children: Vec<u32>,
}

static STATE: Mutex<State> = Mutex::new(State {
    writer: None,
    children: Vec::new(),
});

/// Starts `exe args` detached (`sys::spawn_detached`: its own session on Unix, out of the
/// console and job on Windows), stdin the read end of a fresh pipe, stdout and stderr the
/// null device. std creates both pipe ends non-inheritable (close-on-exec) and hands only
/// the child's stdin end over, so no other child (ssh, a credential helper) inherits the
/// write end: EOF means this process is gone.
fn spawn_detached(exe: &Path, args: &[OsString]) -> std::io::Result<(u32, std::io::PipeWriter)> {
    let (reader, writer) = std::io::pipe()?;
    let mut c = std::process::Command::new(exe);
    c.args(args)
        .stdin(std::process::Stdio::from(reader))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // The child is not waited for: once this process is gone it is reparented and reaped.
    let child = crate::sys::spawn_detached(&mut c)?;
    Ok((child.id(), writer))
}

fn child_message(pid: u32) -> [u8; 5] {
    let p = pid.to_le_bytes();
    [CHILD, p[0], p[1], p[2], p[3]]
}

/// Starts the guardian `exe args` and tells it the children registered so far. Returns its
/// pid. Writes to a guardian that is gone fail with EPIPE (Rust ignores SIGPIPE) and are
/// ignored: the capture never depends on it.
pub fn start(exe: &Path, args: &[OsString]) -> std::io::Result<u32> {
    let (pid, mut writer) = spawn_detached(exe, args)?;
    let mut s = STATE.lock().unwrap_or_else(|p| p.into_inner());
    for c in &s.children {
        let _ = writer.write_all(&child_message(*c));
    }
    s.writer = Some(writer);
    Ok(pid)
}

/// A child process that must not outlive this one: the guardian ends it if this process
/// dies (kept for a guardian started later, too).
pub fn watch_child(pid: u32) {
    let mut s = STATE.lock().unwrap_or_else(|p| p.into_inner());
    s.children.push(pid);
    if let Some(w) = s.writer.as_mut() {
        let _ = w.write_all(&child_message(pid));
    }
}

/// Our teardown is finished: the guardian exits without doing anything.
pub fn done() {
    let mut s = STATE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(mut w) = s.writer.take() {
        let _ = w.write_all(&[DONE]);
    }
}

/// What the guardian heard on its stdin.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// `D`: the parent finished its teardown.
    Done,
    /// EOF without `D`: the parent is gone. The children it named, with their sessions
    /// as they were when named.
    Died(Vec<(u32, i32)>),
    /// A byte that is not the protocol.
    Junk(u8),
    /// The pipe could not be read.
    Broken(String),
}

/// Blocks until the parent says done or is gone.
pub fn listen(input: &mut dyn Read) -> Heard {
    let mut children = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match input.read(&mut b) {
            Ok(0) => return Heard::Died(children),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Heard::Broken(e.to_string()),
        }
        match b[0] {
            DONE => return Heard::Done,
            CHILD => {
                let mut p = [0u8; 4];
                match input.read_exact(&mut p) {
                    Ok(()) => {
                        let pid = u32::from_le_bytes(p);
                        if let Some(sid) = platform::session_of(pid) {
                            children.push((pid, sid));
                        }
                    }
                    // Cut short by the parent's death: the message is lost, the death is not.
                    Err(_) => return Heard::Died(children),
                }
            }
            other => return Heard::Junk(other),
        }
    }
}

/// Ends the children a dead parent named (SIGTERM, then SIGKILL after `grace`); those no
/// longer in the session they had are not touched. Returns how many were signalled.
pub fn end_children(children: &[(u32, i32)], grace: std::time::Duration) -> usize {
    children
        .iter()
        .filter(|(pid, sid)| platform::end(*pid, *sid, grace))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol() {
        assert_eq!(listen(&mut &b"D"[..]), Heard::Done);
        assert_eq!(listen(&mut &b""[..]), Heard::Died(vec![]));
        assert_eq!(listen(&mut &b"x"[..]), Heard::Junk(b'x'));
        let me = std::process::id();
        let mut m = child_message(me).to_vec();
        #[cfg(unix)]
        {
            let sid = platform::session_of(me).unwrap();
            assert_eq!(listen(&mut &m[..]), Heard::Died(vec![(me, sid)]));
        }
        m.push(DONE);
        assert_eq!(listen(&mut &m[..]), Heard::Done);
        assert_eq!(
            listen(&mut &[CHILD, 1][..]),
            Heard::Died(vec![]),
            "cut short"
        );
    }
}
