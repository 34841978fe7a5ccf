//! File facts where only files and folders are known (Windows): identity by canonical
//! path, no null device by number, no owners, no symlinks without privilege.

use super::fs::FileKind;
use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io;
use std::path::Path;

pub fn special_kind(_: &FileType) -> FileKind {
    FileKind::Special
}

/// One file, however reached: the same canonical path.
pub fn same_file(a: &Path, _: &Metadata, b: &Path, _: &Metadata) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

pub fn is_null_device(_: &Metadata) -> bool {
    false
}

pub fn open_read_nonblocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

pub fn stdout_metadata() -> Option<Metadata> {
    None
}

pub fn owner_only(_: &mut OpenOptions) {}

pub fn keep_mode_and_owner(file: &File, m: &Metadata) {
    let _ = file.set_permissions(m.permissions());
}

pub fn symlink(_: &Path, _: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

pub fn make_executable(_: &Path) {}
