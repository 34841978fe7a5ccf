//! The run ledger: a file per capture listing every AWS resource awsvpc creates, written
//! before each create call (kind and client token) and again when the id is known. It is
//! what teardown works from, and what survives a crash for `awsvpc cleanup` (which also
//! finds everything by tag, for what no file recorded: another machine, a lost disk).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A Reachability Analyzer analysis (`--diagnose reachability`), then its path.
    InsightsAnalysis,
    InsightsPath,
    Session,
    FilterRule,
    Filter,
    Target,
    Instance,
    SecurityGroup,
}

impl Kind {
    /// Teardown order: what depends on others goes first.
    pub const TEARDOWN_ORDER: [Kind; 8] = [
        Kind::InsightsAnalysis,
        Kind::InsightsPath,
        Kind::Session,
        Kind::FilterRule,
        Kind::Filter,
        Kind::Target,
        Kind::Instance,
        Kind::SecurityGroup,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: Kind,
    pub client_token: String,
    /// Set once the create call answered.
    pub id: Option<String>,
    /// For filter rules: the filter they belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Deleted (or found gone) during teardown.
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ledger {
    pub run_id: String,
    pub profile: Option<String>,
    pub region: String,
    pub created_by: String,
    pub started: String,
    /// The capture process, so `--extcap-cleanup-postkill` can tell a dead run from a live
    /// one (absent in ledgers of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub entries: Vec<Entry>,
    #[serde(skip)]
    path: PathBuf,
    /// Its file was removed: a late write (the diagnosis thread, which shares the ledger)
    /// must not bring it back.
    #[serde(skip)]
    finished: bool,
}

/// Where a create call records itself (`provision::create`): a ledger the caller owns, or
/// one shared with another thread (the capture's and its diagnosis's), locked for each
/// write only, never across a request.
pub trait Record {
    fn intend(
        &mut self,
        kind: Kind,
        client_token: &str,
        parent: Option<&str>,
    ) -> std::io::Result<usize>;
    fn created(&mut self, index: usize, id: &str) -> std::io::Result<()>;
    fn void(&mut self, index: usize) -> std::io::Result<()>;
}

impl Record for Ledger {
    fn intend(
        &mut self,
        kind: Kind,
        client_token: &str,
        parent: Option<&str>,
    ) -> std::io::Result<usize> {
        Ledger::intend(self, kind, client_token, parent)
    }
    fn created(&mut self, index: usize, id: &str) -> std::io::Result<()> {
        Ledger::created(self, index, id)
    }
    fn void(&mut self, index: usize) -> std::io::Result<()> {
        Ledger::void(self, index)
    }
}

impl Record for &std::sync::Mutex<Ledger> {
    fn intend(
        &mut self,
        kind: Kind,
        client_token: &str,
        parent: Option<&str>,
    ) -> std::io::Result<usize> {
        lock(self).intend(kind, client_token, parent)
    }
    fn created(&mut self, index: usize, id: &str) -> std::io::Result<()> {
        lock(self).created(index, id)
    }
    fn void(&mut self, index: usize) -> std::io::Result<()> {
        lock(self).void(index)
    }
}

/// A shared ledger, locked; a panic elsewhere does not hide what it recorded.
pub fn lock(l: &std::sync::Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

/// The folder holding ledgers: `$AWSVPC_STATE_DIR`, else `$XDG_STATE_HOME/awsvpc/runs`,
/// else `~/.local/state/awsvpc/runs` (Windows: `%LOCALAPPDATA%\awsvpc\runs`).
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AWSVPC_STATE_DIR") {
        return PathBuf::from(d);
    }
    let base = crate::sys::dirs::state_base().unwrap_or_else(std::env::temp_dir);
    base.join("awsvpc").join("runs")
}

impl Ledger {
    /// Starts the ledger of a run and writes it.
    pub fn create(
        dir: &Path,
        run_id: &str,
        profile: Option<&str>,
        region: &str,
        created_by: &str,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let l = Ledger {
            run_id: run_id.to_string(),
            profile: profile.map(str::to_string),
            region: region.to_string(),
            created_by: created_by.to_string(),
            started: super::tags::rfc3339(std::time::SystemTime::now()),
            pid: Some(std::process::id()),
            entries: Vec::new(),
            path: dir.join(format!("{run_id}.json")),
            finished: false,
        };
        l.save()?;
        Ok(l)
    }

    /// A ledger kept in memory only (what `awsvpc cleanup` found by tag).
    pub fn detached(run_id: &str, region: &str) -> Self {
        Ledger {
            run_id: run_id.to_string(),
            profile: None,
            region: region.to_string(),
            created_by: String::new(),
            started: String::new(),
            pid: None,
            entries: Vec::new(),
            path: PathBuf::new(),
            finished: false,
        }
    }

    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let mut l: Ledger = serde_json::from_str(&text).map_err(std::io::Error::other)?;
        l.path = path.to_path_buf();
        Ok(l)
    }

    /// Every ledger left in `dir` (runs that did not finish their teardown).
    pub fn all_in(dir: &Path) -> Vec<Ledger> {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut v: Vec<Ledger> = rd
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| Ledger::load(&e.path()).ok())
            .collect();
        v.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        v
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records the intent to create a resource, before the call. Returns its index.
    pub fn intend(
        &mut self,
        kind: Kind,
        client_token: &str,
        parent: Option<&str>,
    ) -> std::io::Result<usize> {
        if self.finished {
            // Nothing may be created once the run's teardown is over.
            return Err(std::io::Error::other("the capture's teardown has finished"));
        }
        self.entries.push(Entry {
            kind,
            client_token: client_token.to_string(),
            id: None,
            parent: parent.map(str::to_string),
            deleted: false,
        });
        self.save()?;
        Ok(self.entries.len() - 1)
    }

    pub fn created(&mut self, index: usize, id: &str) -> std::io::Result<()> {
        self.entries[index].id = Some(id.to_string());
        self.save()
    }

    /// Records a resource of this run found by its tag rather than by a create answer.
    pub fn adopt(&mut self, kind: Kind, id: &str) -> std::io::Result<()> {
        self.entries.push(Entry {
            kind,
            client_token: String::new(),
            id: Some(id.to_string()),
            parent: None,
            deleted: false,
        });
        self.save()
    }

    /// A create call AWS answered with an error: nothing was created.
    pub fn void(&mut self, index: usize) -> std::io::Result<()> {
        self.mark_deleted(index)
    }

    pub fn mark_deleted(&mut self, index: usize) -> std::io::Result<()> {
        self.entries[index].deleted = true;
        self.save()
    }

    /// Resources still to remove, in teardown order.
    pub fn pending(&self) -> Vec<(usize, &Entry)> {
        let mut v: Vec<(usize, &Entry)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.deleted)
            .collect();
        v.sort_by_key(|(i, e)| {
            (
                Kind::TEARDOWN_ORDER.iter().position(|k| *k == e.kind),
                std::cmp::Reverse(*i),
            )
        });
        v
    }

    /// Removes the file once nothing is left.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if self.path.as_os_str().is_empty() {
            return Ok(());
        }
        if self.entries.iter().all(|e| e.deleted) {
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => self.finished = true,
            }
        }
        Ok(())
    }

    /// Writes the whole ledger atomically (temporary file, fsync, rename).
    fn save(&self) -> std::io::Result<()> {
        if self.path.as_os_str().is_empty() || self.finished {
            return Ok(());
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(
            serde_json::to_string_pretty(self)
                .map_err(std::io::Error::other)?
                .as_bytes(),
        )?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_before_and_after_and_orders_teardown() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::create(
            dir.path(),
            "r1",
            Some("p"),
            "eu-west-1",
            "arn:aws:iam::1:user/a",
        )
        .unwrap();
        let f = l.intend(Kind::Filter, "awsvpc-r1-filter", None).unwrap();
        let on_disk = Ledger::load(l.path()).unwrap();
        assert_eq!(
            on_disk.entries[0].id, None,
            "intent is on disk before the call"
        );
        l.created(f, "tmf-1").unwrap();
        let r = l
            .intend(Kind::FilterRule, "awsvpc-r1-rule-1", Some("tmf-1"))
            .unwrap();
        l.created(r, "tmfr-1").unwrap();
        let t = l.intend(Kind::Target, "awsvpc-r1-target", None).unwrap();
        l.created(t, "tmt-1").unwrap();
        let s = l
            .intend(Kind::Session, "awsvpc-r1-session-0", None)
            .unwrap();
        let order: Vec<Kind> = l.pending().iter().map(|(_, e)| e.kind).collect();
        assert_eq!(
            order,
            vec![Kind::Session, Kind::FilterRule, Kind::Filter, Kind::Target]
        );
        assert_eq!(Ledger::all_in(dir.path()).len(), 1);
        for i in [s, r, f, t] {
            l.mark_deleted(i).unwrap();
        }
        l.finish().unwrap();
        assert!(
            Ledger::all_in(dir.path()).is_empty(),
            "a finished run leaves no file"
        );
    }
}
