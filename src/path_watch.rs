//! The diagnosis of a live capture: a `Progress` in front of the toolbar's that, on the
//! counters tick (every second, from the counters thread, never the packet path), notices
//! a mirrored source that has delivered nothing `AFTER` its session became active and asks
//! a worker thread of its own to check that source's path (bounded by
//! `path_facts::BOUND`, at most once per source per `EVERY`). The finding goes to the
//! status bar and the log on the next tick. The same worker polls the sources' SkipMirror
//! metrics every `POLL` (`aws::skip_mirror`) into `Counters::upstream`, which the toolbar
//! counters and the pcapng statistics show as their own count. With `--diagnose
//! reachability` a source's first diagnosis also starts one Reachability Analyzer analysis
//! (`aws::reachability`), whose sentence follows when AWS has answered (minutes), while the
//! checks and polls of other sources go on.

use crate::aws::ledger::Ledger;
use crate::aws::{client, path_facts, reachability};
use crate::capture::Progress;
use crate::config::CaptureConfig;
use crate::diagnose::MirrorFilter;
use crate::narrow::Narrowing;
use crate::pipeline::Counters;
use crate::sources::KnownSource;
use crate::{log_info, log_msg};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// How long a source may deliver nothing before its path is checked.
pub const AFTER: Duration = Duration::from_secs(10);
/// At most one diagnosis per source this often.
pub const EVERY: Duration = Duration::from_secs(60);
/// How often the SkipMirror metrics are read (EC2 publishes them every 1 or 5 minutes).
pub const POLL: Duration = Duration::from_secs(60);

fn secs_from_env(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(default)
}

struct Request {
    eni: String,
    secs: u64,
}

#[derive(Default)]
struct State {
    /// Per source ENI: when its last diagnosis was asked for.
    asked: Vec<(String, Instant)>,
}

pub struct Watch<'a> {
    inner: &'a (dyn Progress + Sync),
    start: Instant,
    after: Duration,
    every: Duration,
    sources: Vec<KnownSource>,
    state: Mutex<State>,
    requests: Mutex<Option<UnboundedSender<Request>>>,
    results: Mutex<Receiver<Report>>,
    /// Dropped with the watch: the worker stops wherever it is.
    shutdown: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// Said by the worker as it ends, so that dropping the watch waits for it (bounded).
    ended: Mutex<Receiver<()>>,
}

/// What the worker hands back to the tick.
enum Report {
    Sentence(String),
    /// Per VNI, packets not mirrored since the capture started.
    Upstream(Vec<(u32, u64)>),
}

impl<'a> Watch<'a> {
    /// Watches the sources of `mirror` for a capture of `cfg`, reporting through `inner`.
    pub fn new(
        cfg: &CaptureConfig,
        mirror: &crate::mirror::Mirror,
        inner: &'a (dyn Progress + Sync),
    ) -> Self {
        let (req_tx, req_rx) = unbounded_channel::<Request>();
        let (res_tx, res_rx) = channel::<Report>();
        let (end_tx, end_rx) = channel::<()>();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let work = Worker {
            rt: mirror.runtime().clone(),
            sources: mirror
                .sources
                .iter()
                .map(|s| (s.eni.clone(), s.vni))
                .collect(),
            started: SystemTime::now(),
            poll: secs_from_env("AWSVPC_TEST_SKIPMIRROR_SECS", POLL),
            profile: mirror.profile().map(str::to_string),
            region: mirror.region().to_string(),
            sessions: mirror.sessions.clone(),
            filter: cfg.filter.clone(),
            narrowing: path_facts::narrowing(cfg),
            ledger: cfg.reachability.then(|| mirror.ledger()),
        };
        let spawned = std::thread::Builder::new()
            .name("diagnose".into())
            .spawn(move || {
                work.run(req_rx, res_tx, shutdown_rx);
                let _ = end_tx.send(());
            });
        if let Err(e) = &spawned {
            log_msg!("could not start the mirror path diagnosis: {e}");
        }
        Watch {
            inner,
            start: Instant::now(),
            after: secs_from_env("AWSVPC_TEST_DIAGNOSE_AFTER_SECS", AFTER),
            every: secs_from_env("AWSVPC_TEST_DIAGNOSE_EVERY_SECS", EVERY),
            sources: mirror.sources.clone(),
            state: Mutex::new(State::default()),
            requests: Mutex::new(spawned.ok().map(|_| req_tx)),
            results: Mutex::new(res_rx),
            shutdown: Mutex::new(Some(shutdown_tx)),
            ended: Mutex::new(end_rx),
        }
    }

    fn tick(&self, counters: &Counters) {
        if let Ok(rx) = self.results.lock() {
            while let Ok(report) = rx.try_recv() {
                match report {
                    Report::Sentence(sentence) => {
                        log_msg!("{sentence}");
                        self.inner.status(&sentence);
                    }
                    Report::Upstream(counts) => {
                        if let Ok(mut u) = counters.upstream.lock() {
                            *u = counts;
                        }
                    }
                }
            }
        }
        let elapsed = self.start.elapsed();
        if elapsed < self.after {
            return;
        }
        let seen = counters.seen_vnis();
        let (Ok(mut state), Ok(requests)) = (self.state.lock(), self.requests.lock()) else {
            return;
        };
        let Some(tx) = requests.as_ref() else {
            return;
        };
        for s in self.sources.iter().filter(|s| !seen.contains(&s.vni)) {
            let due = match state.asked.iter_mut().find(|(e, _)| *e == s.eni) {
                Some((_, at)) if at.elapsed() < self.every => false,
                Some((_, at)) => {
                    *at = Instant::now();
                    true
                }
                None => {
                    state.asked.push((s.eni.clone(), Instant::now()));
                    true
                }
            };
            if due {
                log_info!(
                    "nothing from {} for {} s: checking its mirror path",
                    s.eni,
                    elapsed.as_secs()
                );
                let _ = tx.send(Request {
                    eni: s.eni.clone(),
                    secs: elapsed.as_secs(),
                });
            }
        }
    }
}

impl Progress for Watch<'_> {
    fn status(&self, text: &str) {
        self.inner.status(text);
    }

    fn counters(&self, counters: &Counters) {
        self.inner.counters(counters);
        self.tick(counters);
    }
}

/// The capture is over: the worker stops before the mirror's teardown, so that nothing it
/// would create or remove races the teardown of the ledger they share. A step in flight is
/// abandoned: what an unanswered create may have made carries the run's tag, and the
/// teardown finds it by that tag (`teardown::resolve_unknown_ids`).
impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shutdown.lock() {
            s.take();
        }
        if let Ok(ended) = self.ended.lock() {
            let _ = ended.recv_timeout(Duration::from_secs(3));
        }
    }
}

/// The diagnosis thread: its AWS client made on the first use, on the capture's runtime.
struct Worker {
    /// Shared with the mirror; held until this thread ends, so a call it is finishing
    /// when the capture ends still has its runtime.
    rt: std::sync::Arc<tokio::runtime::Runtime>,
    /// (source ENI, VNI).
    sources: Vec<(String, u32)>,
    started: SystemTime,
    poll: Duration,
    profile: Option<String>,
    region: String,
    sessions: Vec<String>,
    filter: Option<String>,
    narrowing: Narrowing,
    /// With `--diagnose reachability`: the run's ledger, for the analyzer's resources.
    ledger: Option<Arc<Mutex<Ledger>>>,
}

#[derive(Default)]
struct Known {
    aws: Option<crate::aws::client::Aws>,
    /// (source ENI, target ENI) of the sessions.
    targets: Option<Vec<(String, String)>>,
    /// The source ENIs' instances, in `sources` order.
    instances: Option<Vec<Option<String>>>,
    /// The last SkipMirror counts, in `sources` order, and the minutes they cover.
    skipped: Option<(Vec<u64>, u32)>,
    /// A metrics failure is logged once.
    said: bool,
    /// Sources already put to Reachability Analyzer (once per capture: it is billed).
    analysed: Vec<String>,
}

impl Worker {
    fn run(
        self,
        requests: UnboundedReceiver<Request>,
        results: Sender<Report>,
        shutdown: tokio::sync::oneshot::Receiver<()>,
    ) {
        let rt = self.rt.clone();
        rt.block_on(async move {
            tokio::select! {
                _ = self.serve(requests, results) => {}
                _ = shutdown => {}
            }
        });
    }

    /// Answers requests, polls the metrics and collects analyses until the watch is gone.
    async fn serve(&self, mut requests: UnboundedReceiver<Request>, results: Sender<Report>) {
        let mut k = Known::default();
        let mut analyses = tokio::task::JoinSet::new();
        let first = tokio::time::Instant::now() + self.poll;
        let mut poll = tokio::time::interval_at(first, self.poll);
        loop {
            let report = tokio::select! {
                r = requests.recv() => {
                    let Some(r) = r else { break };
                    let sentence = self.diagnose(&mut k, &r).await;
                    if let Some(job) = self.analysis(&mut k, &r) {
                        analyses.spawn(job);
                    }
                    Report::Sentence(sentence)
                }
                _ = poll.tick() => match self.poll_metrics(&mut k).await {
                    Some(counts) => Report::Upstream(counts),
                    None => continue,
                },
                Some(done) = analyses.join_next() => match done {
                    Ok(sentence) => Report::Sentence(sentence),
                    Err(_) => continue,
                },
            };
            if results.send(report).is_err() {
                break;
            }
        }
    }

    /// The Reachability Analyzer job for `r`'s source, when asked for and not yet run.
    fn analysis(
        &self,
        k: &mut Known,
        r: &Request,
    ) -> Option<impl std::future::Future<Output = String> + Send + 'static> {
        let ledger = self.ledger.clone()?;
        if k.analysed.contains(&r.eni) {
            return None;
        }
        let aws = k.aws.clone()?;
        let target = k
            .targets
            .as_ref()?
            .iter()
            .find(|(s, _)| *s == r.eni)
            .map(|(_, t)| t.clone())?;
        k.analysed.push(r.eni.clone());
        let (eni, secs) = (r.eni.clone(), r.secs);
        log_msg!(
            "nothing from {eni} for {secs} s: asking Reachability Analyzer about its path to {target} (billed by AWS: $0.10)"
        );
        Some(async move {
            let body = match reachability::analyze(&aws, &ledger, &eni, &target).await {
                Ok(body) => body,
                Err(u) => format!("could not check {} ({}).", u.what, u.why),
            };
            format!("Nothing from {eni} for {secs} s: {body}")
        })
    }

    async fn connect(&self, k: &mut Known) -> Result<(), String> {
        if k.aws.is_none() {
            k.aws = Some(client::connect(self.profile.as_deref(), Some(&self.region)).await?);
        }
        Ok(())
    }

    /// The SkipMirror counts since the capture started, per VNI.
    async fn poll_metrics(&self, k: &mut Known) -> Option<Vec<(u32, u64)>> {
        if let Err(e) = self.connect(k).await {
            log_info!("SkipMirror metrics not read: {e}");
            return None;
        }
        let aws = k.aws.as_ref()?;
        if k.instances.is_none() {
            let ids: Vec<&str> = self.sources.iter().map(|(e, _)| e.as_str()).collect();
            match path_facts::enis(aws, &ids).await {
                Ok(enis) => k.instances = Some(enis.into_iter().map(|e| e.instance).collect()),
                Err(u) => {
                    log_info!(
                        "SkipMirror metrics not read: could not check {} ({})",
                        u.what,
                        u.why
                    );
                    return None;
                }
            }
        }
        let instances = k.instances.clone()?;
        let known: Vec<String> = instances.iter().flatten().cloned().collect();
        if known.is_empty() {
            return None;
        }
        let window = self
            .started
            .elapsed()
            .unwrap_or_default()
            .max(Duration::from_secs(60));
        match crate::aws::skip_mirror::skipped(aws, &known, window, SystemTime::now()).await {
            Ok(counts) => {
                let mut it = counts.into_iter();
                let per_source: Vec<u64> = instances
                    .iter()
                    .map(|i| i.as_ref().and_then(|_| it.next()).unwrap_or(0))
                    .collect();
                let minutes = (window.as_secs() / 60).max(1) as u32;
                let out = self
                    .sources
                    .iter()
                    .zip(&per_source)
                    .map(|((_, vni), n)| (*vni, *n))
                    .collect();
                k.skipped = Some((per_source, minutes));
                Some(out)
            }
            Err(u) => {
                if !std::mem::replace(&mut k.said, true) {
                    log_msg!("could not check {} ({})", u.what, u.why);
                }
                None
            }
        }
    }

    async fn diagnose(&self, k: &mut Known, r: &Request) -> String {
        if let Err(e) = self.connect(k).await {
            return format!(
                "Nothing from {} for {} s; could not check its path: {e}",
                r.eni, r.secs
            );
        }
        let Some(aws) = k.aws.as_ref() else {
            return String::new();
        };
        if k.targets.is_none() {
            match path_facts::session_targets(aws, &self.sessions).await {
                Ok(t) => k.targets = Some(t),
                Err(u) => {
                    return crate::diagnose::Diagnosis::not_checked(u).sentence(&r.eni, r.secs)
                }
            }
        }
        let target = k
            .targets
            .as_ref()
            .and_then(|t| t.iter().find(|(s, _)| *s == r.eni))
            .map(|(_, t)| t.clone());
        let Some(target) = target else {
            return format!("Nothing from {} for {} s; its mirror target is not a network interface, so awsvpc cannot check the path.", r.eni, r.secs);
        };
        let skipped = k.skipped.as_ref().and_then(|(counts, minutes)| {
            let i = self.sources.iter().position(|(e, _)| *e == r.eni)?;
            Some(crate::diagnose::facts::SkipMirror {
                packets: *counts.get(i)?,
                minutes: *minutes,
            })
        });
        let filter = MirrorFilter {
            capture_filter: self.filter.as_deref(),
            rules: &self.narrowing.rules,
            accept_all: self.narrowing.accept_all,
        };
        path_facts::diagnose(aws, &r.eni, &target, &filter, skipped)
            .await
            .sentence(&r.eni, r.secs)
    }
}
