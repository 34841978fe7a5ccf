//! File facts Unix has and other systems do not: file types beyond file and folder, inode
//! identity, the null device by number, opening without waiting for a fifo's writer,
//! owners, symlinks and the executable bit.

use super::fs::FileKind;
use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// What a path that is neither a file nor a folder is.
pub fn special_kind(ft: &FileType) -> FileKind {
    if ft.is_fifo() {
        FileKind::Fifo
    } else if ft.is_char_device() {
        FileKind::CharDevice
    } else if ft.is_block_device() {
        FileKind::BlockDevice
    } else if ft.is_socket() {
        FileKind::Socket
    } else {
        FileKind::Special
    }
}

/// One file, however reached: the same device and inode.
pub fn same_file(_a: &Path, a: &Metadata, _b: &Path, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// The null device, by its device number, so a copy of it counts too.
pub fn is_null_device(meta: &Metadata) -> bool {
    meta.file_type().is_char_device()
        && std::fs::metadata("/dev/null").is_ok_and(|n| n.rdev() == meta.rdev())
}

/// Opens for reading without waiting: should the path have become a fifo since it was
/// checked, the open must not block until a writer comes.
pub fn open_read_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// What standard output is, to refuse writing a capture over the file being read.
pub fn stdout_metadata() -> Option<Metadata> {
    use std::os::fd::AsFd;
    let fd = io::stdout().as_fd().try_clone_to_owned().ok()?;
    File::from(fd).metadata().ok()
}

/// A file being created readable by its owner only, until it gets the mode of the file it
/// replaces.
pub fn owner_only(open: &mut OpenOptions) {
    open.mode(0o600);
}

/// Best effort, as `cp -p`: the owner first (a change of owner clears set-id bits), then
/// the mode.
pub fn keep_mode_and_owner(file: &File, m: &Metadata) {
    if std::os::unix::fs::fchown(file, Some(m.uid()), Some(m.gid())).is_err() {
        let _ = std::os::unix::fs::fchown(file, None, Some(m.gid()));
    }
    let _ = file.set_permissions(m.permissions());
}

pub fn symlink(original: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(original, link)
}

/// rwxr-xr-x, best effort: a copied binary must stay runnable for whoever runs Wireshark.
pub fn make_executable(path: &Path) {
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fs::{kind, FileKind};

    #[test]
    fn devices_are_named_and_the_null_device_is_known_by_number() {
        let zero = std::fs::metadata("/dev/zero").unwrap();
        assert_eq!(kind(&zero.file_type()), FileKind::CharDevice);
        assert_eq!(FileKind::CharDevice.to_string(), "character device");
        assert!(!is_null_device(&zero));
        assert!(is_null_device(&std::fs::metadata("/dev/null").unwrap()));
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            kind(&dir.path().metadata().unwrap().file_type()),
            FileKind::Folder
        );
    }
}
