//! Paths a person names on the command line, handled as an attacker might name them: the
//! input itself as the output (through a link), a fifo or a device, a folder, a file that
//! never ends. Every refusal is one sentence naming the path and the fix.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Why a named path was refused; each `Display` is the sentence the user reads.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("Cannot read {}: {source}; fix its permissions or remove it.", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("Cannot read {}: {source}.", path.display())]
    ReadFailed { path: PathBuf, source: io::Error },
    #[error("{} is a {kind}, not a regular file, so awsvpc does not read it; replace it with the file it stands for or remove it.", path.display())]
    NotRegular { path: PathBuf, kind: FileKind },
    #[error("{} is larger than {}, too large for an AWS configuration file, so awsvpc does not read it; check what it is or remove it.", path.display(), limit(*max))]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{} is a folder; name the capture file in it.", path.display())]
    InputIsFolder { path: PathBuf },
    #[error("{} does not exist; name the capture taken on the mirror target (tcpdump -w FILE udp port 4789).", path.display())]
    InputMissing { path: PathBuf },
    #[error("Cannot read {}: permission denied; make it readable or run awsvpc as a user who can read it.", path.display())]
    InputDenied { path: PathBuf },
    #[error("-w {} is the capture being read ({}), which it would overwrite; write the output to another file.", out.display(), input.display())]
    OutputIsInput { out: PathBuf, input: PathBuf },
    #[error("{} is a folder; name a file in it with -w, e.g. -w {}.", out.display(), out.join("clean.pcapng").display())]
    OutputIsFolder { out: PathBuf },
    #[error("{} is a block device, which awsvpc does not overwrite; write to a file, a fifo or -w -.", out.display())]
    OutputIsBlockDevice { out: PathBuf },
    #[error("stdout is not a file")]
    StdoutIsNotAFile,
    #[error("Cannot open {shown} for writing ({source}); choose another path with -w.")]
    OutputUnopenable { shown: String, source: io::Error },
    #[error("{shown} is not a file name; name the output file with -w.")]
    NotAFileName { shown: String },
    #[error("Cannot write {shown}: the folder {} does not exist; create it or choose another path with -w.", dir.display())]
    FolderMissing { shown: String, dir: PathBuf },
    #[error("Cannot write {shown}: cannot create a file in {} ({source}); choose a folder you can write to with -w.", dir.display())]
    FolderUnwritable {
        shown: String,
        dir: PathBuf,
        source: io::Error,
    },
    #[error("Cannot write {shown}: cannot create a temporary file in {} ({}); remove its stale .awsvpc-*.partial files.", dir.display(), last.as_ref().map(|e| e.to_string()).unwrap_or_default())]
    StalePartials {
        shown: String,
        dir: PathBuf,
        last: Option<io::Error>,
    },
    #[error("Cannot write {shown}: {source}.")]
    WriteFailed { shown: String, source: io::Error },
    #[error("Cannot create {}: {source}.", dir.display())]
    FolderUncreatable { dir: PathBuf, source: io::Error },
}

/// Callers above that still speak in sentences take the sentence.
impl From<FileError> for String {
    fn from(e: FileError) -> String {
        e.to_string()
    }
}

fn limit(max: u64) -> String {
    if max.is_multiple_of(1 << 20) {
        format!("{} MiB", max >> 20)
    } else {
        format!("{max} bytes")
    }
}

/// Largest AWS configuration file awsvpc reads (real ones are a few KiB).
pub const MAX_CONFIG_FILE: u64 = 1 << 20;

use crate::sys::fs::{is_null_device, same_file};
pub use crate::sys::fs::{kind, FileKind};

/// Whether two existing paths name one file.
pub fn same_file_paths(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => same_file(a, &x, b, &y),
        _ => false,
    }
}

/// A file awsvpc reads whole and small (the AWS configuration files): `Ok(None)` when it
/// does not exist; refused when it is not a regular file or is larger than `max`, so that a
/// link to `/dev/zero` or a fifo without a writer can neither hang nor exhaust memory.
pub fn read_small_file(path: &Path, max: u64) -> Result<Option<String>, FileError> {
    let unreadable = |source| FileError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    check_small(path, &meta, max)?;
    if is_null_device(&meta) {
        return Ok(Some(String::new()));
    }
    let file = crate::sys::fs::open_read_nonblocking(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(|source| FileError::ReadFailed {
        path: path.to_path_buf(),
        source,
    })?;
    check_small(path, &meta, max)?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > max {
        return Err(too_large(path, max));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The checks of [`read_small_file`] without reading: what the AWS SDK will read must pass
/// them before it is invoked.
pub fn check_small_file(path: &Path, max: u64) -> Result<(), FileError> {
    match std::fs::metadata(path) {
        Ok(m) => check_small(path, &m, max),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(FileError::Unreadable {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn check_small(path: &Path, meta: &Metadata, max: u64) -> Result<(), FileError> {
    if is_null_device(meta) {
        return Ok(());
    }
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind(&meta.file_type()),
        });
    }
    if meta.len() > max {
        return Err(too_large(path, max));
    }
    Ok(())
}

fn too_large(path: &Path, max: u64) -> FileError {
    FileError::TooLarge {
        path: path.to_path_buf(),
        max,
    }
}

/// What the capture `decap` reads is, before it is opened (a fifo is fine: `tcpdump -w`
/// into one streams a capture, and opening it waits for that writer).
pub fn check_input(path: &Path) -> Result<Metadata, FileError> {
    let meta = std::fs::metadata(path).map_err(|e| input_error(path, e))?;
    if meta.is_dir() {
        return Err(FileError::InputIsFolder {
            path: path.to_path_buf(),
        });
    }
    Ok(meta)
}

pub fn open_input(path: &Path) -> Result<File, FileError> {
    File::open(path).map_err(|e| input_error(path, e))
}

fn input_error(path: &Path, source: io::Error) -> FileError {
    let path = path.to_path_buf();
    match source.kind() {
        io::ErrorKind::NotFound => FileError::InputMissing { path },
        io::ErrorKind::PermissionDenied => FileError::InputDenied { path },
        _ => FileError::ReadFailed { path, source },
    }
}

/// Where `decap -w` writes.
#[derive(Debug)]
pub enum Output {
    Stdout,
    /// An existing fifo or character device (or a link to one): opened and written as it
    /// is, never replaced by a file.
    Through(PathBuf),
    /// A regular file, or none yet, at `path` (links followed, so a symlink's target is
    /// replaced, not the link): written to a temporary file beside it and renamed over it
    /// at the end, so a failed decap leaves the old file. `keep` is the file replaced,
    /// whose mode and owner the new one gets.
    Replace {
        path: PathBuf,
        keep: Option<Metadata>,
    },
}

/// Decides how to write `out`, refusing the input itself, folders and block devices.
pub fn output_for(out: &Path, input: &Path, input_meta: &Metadata) -> Result<Output, FileError> {
    let write_failed = |source| FileError::WriteFailed {
        shown: out.display().to_string(),
        source,
    };
    let same = |meta: &Metadata| {
        if same_file(input, input_meta, out, meta) {
            Err(FileError::OutputIsInput {
                out: out.to_path_buf(),
                input: input.to_path_buf(),
            })
        } else {
            Ok(())
        }
    };
    if out.as_os_str() == "-" {
        if let Some(meta) = crate::sys::fs::stdout_metadata() {
            same(&meta)?;
        }
        return Ok(Output::Stdout);
    }
    match std::fs::metadata(out) {
        Ok(meta) => {
            same(&meta)?;
            if meta.is_dir() {
                return Err(FileError::OutputIsFolder {
                    out: out.to_path_buf(),
                });
            }
            if meta.is_file() {
                let path = out.canonicalize().map_err(write_failed)?;
                return Ok(Output::Replace {
                    path,
                    keep: Some(meta),
                });
            }
            if kind(&meta.file_type()) == FileKind::BlockDevice {
                return Err(FileError::OutputIsBlockDevice {
                    out: out.to_path_buf(),
                });
            }
            Ok(Output::Through(out.to_path_buf()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Output::Replace {
            path: dangling_target(out),
            keep: None,
        }),
        Err(e) => Err(write_failed(e)),
    }
}

/// The file a path would create: itself, or where its (dangling) symlink chain points.
fn dangling_target(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&p) {
            Ok(t) => {
                p = match p.parent() {
                    Some(dir) if t.is_relative() => dir.join(t),
                    _ => t,
                }
            }
            Err(_) => break,
        }
    }
    p
}

/// An output file being written; [`Writing::commit`] puts it in place. Dropped uncommitted,
/// it removes its temporary file.
pub struct Writing {
    pub file: File,
    /// (temporary file, final path) of a replacement.
    rename: Option<(PathBuf, PathBuf)>,
    shown: String,
}

impl Writing {
    pub fn start(output: &Output, shown: &str) -> Result<Writing, FileError> {
        match output {
            Output::Stdout => Err(FileError::StdoutIsNotAFile),
            Output::Through(path) => {
                // Never truncate or create: a device or fifo is written as it is.
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|source| FileError::OutputUnopenable {
                        shown: shown.to_string(),
                        source,
                    })?;
                Ok(Writing {
                    file,
                    rename: None,
                    shown: shown.to_string(),
                })
            }
            Output::Replace { path, keep } => {
                let (tmp, file) = create_beside(path, keep.as_ref(), shown)?;
                Ok(Writing {
                    file,
                    rename: Some((tmp, path.clone())),
                    shown: shown.to_string(),
                })
            }
        }
    }

    pub fn commit(mut self) -> Result<(), FileError> {
        let Some((tmp, path)) = self.rename.take() else {
            return Ok(());
        };
        std::fs::rename(&tmp, &path).map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            FileError::WriteFailed {
                shown: std::mem::take(&mut self.shown),
                source,
            }
        })
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if let Some((tmp, _)) = &self.rename {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// A new file in `path`'s folder that no other file is (created exclusively), with the
/// mode and owner of the file it will replace.
fn create_beside(
    path: &Path,
    keep: Option<&Metadata>,
    shown: &str,
) -> Result<(PathBuf, File), FileError> {
    let Some(name) = path.file_name() else {
        return Err(FileError::NotAFileName {
            shown: shown.to_string(),
        });
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut last = None;
    for n in 0..100u32 {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".awsvpc-{}-{n}.partial", std::process::id()));
        let tmp = dir.join(tmp_name);
        let mut open = OpenOptions::new();
        open.write(true).create_new(true);
        if keep.is_some() {
            // Owner-only until the replaced file's mode is applied.
            crate::sys::fs::owner_only(&mut open);
        }
        match open.open(&tmp) {
            Ok(file) => {
                if let Some(m) = keep {
                    crate::sys::fs::keep_mode_and_owner(&file, m);
                }
                return Ok((tmp, file));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(FileError::FolderMissing {
                    shown: shown.to_string(),
                    dir: dir.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(FileError::FolderUnwritable {
                    shown: shown.to_string(),
                    dir: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
    Err(FileError::StalePartials {
        shown: shown.to_string(),
        dir: dir.to_path_buf(),
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_file_limits() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config");
        assert_eq!(read_small_file(&f, 10).unwrap(), None);
        std::fs::write(&f, "[default]\n").unwrap();
        assert_eq!(
            read_small_file(&f, 10).unwrap().as_deref(),
            Some("[default]\n")
        );
        let e = read_small_file(&f, 5).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        let e = read_small_file(dir.path(), 5).unwrap_err().to_string();
        assert!(e.contains("is a folder, not a regular file"), "{e}");
        // Where the system has devices.
        if Path::new("/dev/zero").exists() {
            let e = read_small_file(Path::new("/dev/zero"), MAX_CONFIG_FILE)
                .unwrap_err()
                .to_string();
            assert!(e.contains("character device"), "{e}");
            // AWS_CONFIG_FILE=/dev/null means "no file", as the SDK and the CLI take it.
            let null = Path::new("/dev/null");
            assert_eq!(read_small_file(null, 1).unwrap().as_deref(), Some(""));
            assert!(check_small_file(null, 1).is_ok());
        }
    }

    #[test]
    fn dangling_links_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        // Where the system lets a user make links.
        if crate::sys::fs::symlink(Path::new("sub/../target"), &link).is_ok() {
            assert_eq!(dangling_target(&link), dir.path().join("sub/../target"));
        }
        assert_eq!(dangling_target(&dir.path().join("x")), dir.path().join("x"));
    }
}
