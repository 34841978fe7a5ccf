//! The documentation the toolbar's Help button opens: this build's README as one HTML page
//! on the user's own disk (Wireshark opens `help=` with the desktop's browser). Nothing
//! online is named, so Help works offline and always matches the installed version.

use std::path::{Path, PathBuf};

const README: &str = include_str!("../README.md");

/// The README rendered as a standalone HTML page.
pub fn html() -> String {
    use pulldown_cmark::{html, Options, Parser};
    let mut body = String::with_capacity(README.len() * 3 / 2);
    html::push_html(
        &mut body,
        Parser::new_ext(
            README,
            Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH,
        ),
    );
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>awsvpc {} — AWS VPC Traffic Mirroring in Wireshark</title>\n<style>body{{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em;line-height:1.45}}table{{border-collapse:collapse}}td,th{{border:1px solid #bbb;padding:.2em .4em;vertical-align:top}}pre{{background:#f4f4f4;padding:.6em;overflow-x:auto}}code{{background:#f4f4f4}}</style>\n</head><body>\n{body}</body></html>\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Where the page lives for this user: the per-user data folder of the OS.
pub fn page_path() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let base = if cfg!(windows) {
        env("LOCALAPPDATA").or_else(|| env("APPDATA"))?
    } else if cfg!(target_os = "macos") {
        env("HOME")?.join("Library/Application Support")
    } else {
        env("XDG_DATA_HOME").or_else(|| env("HOME").map(|h| h.join(".local/share")))?
    };
    Some(base.join("awsvpc").join("awsvpc.html"))
}

/// Writes the page (install, and the first query call after an upgrade or a copy by hand):
/// to a file beside it, renamed into place, so a fifo or device found there is replaced,
/// never written into (a fifo would block the call).
pub fn write_page(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("Cannot create {}: {e}.", dir.display()))?;
    }
    let target = crate::files::Output::Replace {
        path: path.to_path_buf(),
        keep: None,
    };
    let mut w = crate::files::Writing::start(&target, &path.display().to_string())?;
    use std::io::Write;
    w.file
        .write_all(html().as_bytes())
        .map_err(|e| format!("Cannot write {}: {e}.", path.display()))?;
    w.commit()
}

/// The `help=` value: a `file:` URL of this version's page, written first if it is missing
/// or from another version. `None` when no page can exist (no home folder, read-only disk):
/// then the Help button has nothing to open, which beats a page that is not there.
pub fn location() -> Option<String> {
    let path = page_path()?;
    // Read only as a small regular file: a fifo or /dev/zero there must not hang the call.
    let current = crate::files::read_small_file(&path, 4 << 20)
        .ok()
        .flatten()
        .is_some_and(|t| t.contains(&format!("<title>awsvpc {} ", env!("CARGO_PKG_VERSION"))));
    if !current {
        write_page(&path).ok()?;
    }
    Some(file_url(&path))
}

/// A `file:` URL: `/` separators, a leading `/` before a drive letter, and every byte outside
/// the unreserved set percent-encoded, so spaces, non-ASCII names and the sentence's own `{}`
/// cannot break Wireshark's parser.
pub fn file_url(path: &Path) -> String {
    let text = path.to_string_lossy().replace('\\', "/");
    let mut url = String::from("file://");
    if !text.starts_with('/') {
        url.push('/');
    }
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b':' => {
                url.push(b as char)
            }
            _ => url.push_str(&format!("%{b:02X}")),
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_survive_spaces_braces_and_drive_letters() {
        assert_eq!(
            file_url(Path::new("/home/Zoë M/.local/share/awsvpc/awsvpc.html")),
            "file:///home/Zo%C3%AB%20M/.local/share/awsvpc/awsvpc.html"
        );
        assert_eq!(
            file_url(Path::new(r"C:\Users\a {b}\awsvpc.html")),
            "file:///C:/Users/a%20%7Bb%7D/awsvpc.html"
        );
    }

    #[test]
    fn the_page_is_the_readme() {
        let page = html();
        assert!(page.contains("<h2>When a capture cannot start: the bad-input table</h2>"));
        assert!(page.contains("<table>"));
        assert!(!page.contains("github.com/awsvpc"));
    }
}
