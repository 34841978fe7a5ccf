//! The documentation the toolbar's Help button opens: this build's README as one HTML page
//! on the user's own disk (Wireshark opens `help=` with the desktop's browser). Nothing
//! online is named, so Help works offline and always matches the installed version.

use crate::files::FileError;
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
    let base = crate::sys::dirs::data_base()?;
    Some(base.join("awsvpc").join("awsvpc.html"))
}

/// Writes the page (install, and the first query call after an upgrade or a copy by hand):
/// to a file beside it, renamed into place, so a fifo or device found there is replaced,
/// never written into (a fifo would block the call).
pub fn write_page(path: &Path) -> Result<(), FileError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| FileError::FolderUncreatable {
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    let target = crate::files::Output::Replace {
        path: path.to_path_buf(),
        keep: None,
    };
    let shown = path.display().to_string();
    let mut w = crate::files::Writing::start(&target, &shown)?;
    use std::io::Write;
    w.file
        .write_all(html().as_bytes())
        .map_err(|source| FileError::WriteFailed { shown, source })?;
    w.commit()
}

/// The `help=` value: the absolute path of this version's page, written first if it is
/// missing or from another version. A path, not a `file:` URL: Wireshark's toolbar Help
/// button refuses the `file` scheme (interface_toolbar.cpp, onHelpButtonPressed) but hands
/// a bare path to the desktop's opener, and so does the options dialog's Help. `None` when
/// no page can exist (no home folder, a read-only disk) or its path would break the
/// sentence (a brace or a control character): then no Help rather than a broken one.
pub fn location() -> Option<String> {
    let path = page_path()?;
    let text = help_value(&path)?;
    // Read only as a small regular file: a fifo or /dev/zero there must not hang the call.
    let current = crate::files::read_small_file(&path, 4 << 20)
        .ok()
        .flatten()
        .is_some_and(|t| t.contains(&format!("<title>awsvpc {} ", env!("CARGO_PKG_VERSION"))));
    if !current {
        write_page(&path).ok()?;
    }
    Some(text)
}

/// The path as a `help=` value: `/` separators, and refused when the extcap sentence could
/// not carry it.
fn help_value(path: &Path) -> Option<String> {
    let text = path.to_str()?.replace('\\', "/");
    (!text.contains(['{', '}']) && !text.chars().any(char::is_control)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_values_keep_spaces_refuse_braces_use_slashes() {
        let p = "/home/Zoë M/.local/share/awsvpc/awsvpc.html";
        assert_eq!(help_value(Path::new(p)).as_deref(), Some(p));
        assert_eq!(
            help_value(Path::new(r"C:\Users\Zoë\awsvpc.html")).as_deref(),
            Some("C:/Users/Zoë/awsvpc.html")
        );
        assert_eq!(help_value(Path::new("/home/a{b}/awsvpc.html")), None);
    }

    #[test]
    fn the_page_is_the_readme() {
        let page = html();
        assert!(page.contains("<h2>When a capture cannot start: the bad-input table</h2>"));
        assert!(page.contains("<table>"));
        assert!(!page.contains("github.com/awsvpc"));
    }
}
