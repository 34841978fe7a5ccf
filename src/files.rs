//! Paths a person names on the command line, handled as an attacker might name them: the
//! input itself as the output (through a link), a fifo or a device, a folder, a file that
//! never ends. Every refusal is one sentence naming the path and the fix.

use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest AWS configuration file awsvpc reads (real ones are a few KiB).
pub const MAX_CONFIG_FILE: u64 = 1 << 20;

/// What a path is, for a sentence.
pub fn kind(ft: &FileType) -> &'static str {
    if ft.is_dir() {
        return "folder";
    }
    if ft.is_file() {
        return "file";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "fifo";
        }
        if ft.is_char_device() {
            return "character device";
        }
        if ft.is_block_device() {
            return "block device";
        }
        if ft.is_socket() {
            return "socket";
        }
    }
    "special file"
}

/// Whether two paths name one file, however reached (hard link, symlink, `./`): the same
/// device and inode on Unix, the same canonical path elsewhere.
fn same_file(a: &Path, a_meta: &Metadata, b: &Path, b_meta: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = (a, b);
        a_meta.dev() == b_meta.dev() && a_meta.ino() == b_meta.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (a_meta, b_meta);
        match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

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
pub fn read_small_file(path: &Path, max: u64) -> Result<Option<String>, String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "Cannot read {shown}: {e}; fix its permissions or remove it."
            ))
        }
    };
    check_small(path, &meta, max)?;
    if is_null_device(&meta) {
        return Ok(Some(String::new()));
    }
    let mut open = OpenOptions::new();
    open.read(true);
    #[cfg(unix)]
    {
        // Should it have become a fifo since the check, the open must not wait for a writer.
        use std::os::unix::fs::OpenOptionsExt;
        open.custom_flags(libc::O_NONBLOCK);
    }
    let file = open
        .open(path)
        .map_err(|e| format!("Cannot read {shown}: {e}; fix its permissions or remove it."))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("Cannot read {shown}: {e}."))?;
    check_small(path, &meta, max)?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("Cannot read {shown}: {e}; fix its permissions or remove it."))?;
    if bytes.len() as u64 > max {
        return Err(too_large(path, max));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The checks of [`read_small_file`] without reading: what the AWS SDK will read must pass
/// them before it is invoked.
pub fn check_small_file(path: &Path, max: u64) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) => check_small(path, &m, max),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!(
            "Cannot read {}: {e}; fix its permissions or remove it.",
            path.display()
        )),
    }
}

/// The null device (AWS_CONFIG_FILE=/dev/null is the usual way to say "no file"): a
/// character device that reads empty, by its device number, so a copy of it counts too.
fn is_null_device(meta: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        meta.file_type().is_char_device()
            && std::fs::metadata("/dev/null").is_ok_and(|n| n.rdev() == meta.rdev())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

fn check_small(path: &Path, meta: &Metadata, max: u64) -> Result<(), String> {
    if is_null_device(meta) {
        return Ok(());
    }
    if !meta.is_file() {
        return Err(format!(
            "{} is a {}, not a regular file, so awsvpc does not read it; replace it with the file it stands for or remove it.",
            path.display(),
            kind(&meta.file_type())
        ));
    }
    if meta.len() > max {
        return Err(too_large(path, max));
    }
    Ok(())
}

fn too_large(path: &Path, max: u64) -> String {
    let limit = if max.is_multiple_of(1 << 20) {
        format!("{} MiB", max >> 20)
    } else {
        format!("{max} bytes")
    };
    format!(
        "{} is larger than {limit}, too large for an AWS configuration file, so awsvpc does not read it; check what it is or remove it.",
        path.display()
    )
}

/// What the capture `decap` reads is, before it is opened (a fifo is fine: `tcpdump -w`
/// into one streams a capture, and opening it waits for that writer).
pub fn check_input(path: &Path) -> Result<Metadata, String> {
    let meta = std::fs::metadata(path).map_err(|e| input_error(path, &e))?;
    if meta.is_dir() {
        return Err(format!(
            "{} is a folder; name the capture file in it.",
            path.display()
        ));
    }
    Ok(meta)
}

pub fn open_input(path: &Path) -> Result<File, String> {
    File::open(path).map_err(|e| input_error(path, &e))
}

fn input_error(path: &Path, e: &io::Error) -> String {
    let shown = path.display();
    match e.kind() {
        io::ErrorKind::NotFound => format!(
            "{shown} does not exist; name the capture taken on the mirror target (tcpdump -w FILE udp port 4789)."
        ),
        io::ErrorKind::PermissionDenied => format!(
            "Cannot read {shown}: permission denied; make it readable or run awsvpc as a user who can read it."
        ),
        _ => format!("Cannot read {shown}: {e}."),
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
pub fn output_for(out: &Path, input: &Path, input_meta: &Metadata) -> Result<Output, String> {
    let shown = out.display();
    let same = |meta: &Metadata| {
        if same_file(input, input_meta, out, meta) {
            Err(format!(
                "-w {shown} is the capture being read ({}), which it would overwrite; write the output to another file.",
                input.display()
            ))
        } else {
            Ok(())
        }
    };
    if out.as_os_str() == "-" {
        if let Some(meta) = stdout_metadata() {
            same(&meta)?;
        }
        return Ok(Output::Stdout);
    }
    match std::fs::metadata(out) {
        Ok(meta) => {
            same(&meta)?;
            if meta.is_dir() {
                return Err(format!(
                    "{shown} is a folder; name a file in it with -w, e.g. -w {}.",
                    out.join("clean.pcapng").display()
                ));
            }
            if meta.is_file() {
                let path = out
                    .canonicalize()
                    .map_err(|e| format!("Cannot write {shown}: {e}."))?;
                return Ok(Output::Replace {
                    path,
                    keep: Some(meta),
                });
            }
            if kind(&meta.file_type()) == "block device" {
                return Err(format!(
                    "{shown} is a block device, which awsvpc does not overwrite; write to a file, a fifo or -w -."
                ));
            }
            Ok(Output::Through(out.to_path_buf()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Output::Replace {
            path: dangling_target(out),
            keep: None,
        }),
        Err(e) => Err(format!("Cannot write {shown}: {e}.")),
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

#[cfg(unix)]
fn stdout_metadata() -> Option<Metadata> {
    use std::os::fd::AsFd;
    let fd = io::stdout().as_fd().try_clone_to_owned().ok()?;
    File::from(fd).metadata().ok()
}

#[cfg(not(unix))]
fn stdout_metadata() -> Option<Metadata> {
    None
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
    pub fn start(output: &Output, shown: &str) -> Result<Writing, String> {
        match output {
            Output::Stdout => Err("stdout is not a file".into()),
            Output::Through(path) => {
                // Never truncate or create: a device or fifo is written as it is.
                let file = OpenOptions::new().write(true).open(path).map_err(|e| {
                    format!("Cannot open {shown} for writing ({e}); choose another path with -w.")
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

    pub fn commit(mut self) -> Result<(), String> {
        let Some((tmp, path)) = self.rename.take() else {
            return Ok(());
        };
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("Cannot write {}: {e}.", self.shown)
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
) -> Result<(PathBuf, File), String> {
    let Some(name) = path.file_name() else {
        return Err(format!(
            "{shown} is not a file name; name the output file with -w."
        ));
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
        #[cfg(unix)]
        if keep.is_some() {
            // Owner-only until the replaced file's mode is applied.
            use std::os::unix::fs::OpenOptionsExt;
            open.mode(0o600);
        }
        match open.open(&tmp) {
            Ok(file) => {
                if let Some(m) = keep {
                    keep_mode_and_owner(&file, m);
                }
                return Ok((tmp, file));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!(
                    "Cannot write {shown}: the folder {} does not exist; create it or choose another path with -w.",
                    dir.display()
                ))
            }
            Err(e) => {
                return Err(format!(
                    "Cannot write {shown}: cannot create a file in {} ({e}); choose a folder you can write to with -w.",
                    dir.display()
                ))
            }
        }
    }
    Err(format!(
        "Cannot write {shown}: cannot create a temporary file in {} ({}); remove its stale .awsvpc-*.partial files.",
        dir.display(),
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Best effort, as `cp -p`: the owner first (a change of owner clears set-id bits), then
/// the mode.
fn keep_mode_and_owner(file: &File, m: &Metadata) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if std::os::unix::fs::fchown(file, Some(m.uid()), Some(m.gid())).is_err() {
            let _ = std::os::unix::fs::fchown(file, None, Some(m.gid()));
        }
    }
    let _ = file.set_permissions(m.permissions());
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
        let e = read_small_file(&f, 5).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
        let e = read_small_file(dir.path(), 5).unwrap_err();
        assert!(e.contains("is a folder, not a regular file"), "{e}");
        #[cfg(unix)]
        {
            let e = read_small_file(Path::new("/dev/zero"), MAX_CONFIG_FILE).unwrap_err();
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
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("sub/../target", &link).unwrap();
            assert_eq!(dangling_target(&link), dir.path().join("sub/../target"));
        }
        assert_eq!(dangling_target(&dir.path().join("x")), dir.path().join("x"));
    }
}
