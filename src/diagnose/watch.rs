//! The diagnosis of a live capture: a `Progress` in front of the toolbar's that, on the
//! counters tick (every second, from the counters thread, never the packet path), notices
//! a mirrored source that has delivered nothing `AFTER` its session became active and asks
//! a worker thread of its own to check that source's path (bounded by
//! `path_facts::BOUND`, at most once per source per `EVERY`). The finding goes to the
//! status bar and the log on the next tick.

use crate::aws::{client, path_facts};
use crate::capture::Progress;
use crate::config::{CaptureConfig, CollectorMode, Connect};
use crate::diagnose::MirrorFilter;
use crate::narrow::Narrowing;
use crate::pipeline::Counters;
use crate::sources::KnownSource;
use crate::{log_info, log_msg};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a source may deliver nothing before its path is checked.
pub const AFTER: Duration = Duration::from_secs(10);
/// At most one diagnosis per source this often.
pub const EVERY: Duration = Duration::from_secs(60);

fn secs_from_env(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(default)
}

/// The accept rules provisioning narrowed the capture filter into, with the same budget
/// (the quota minus the reject rules for the collector's own VXLAN and SSH).
pub fn narrowing(cfg: &CaptureConfig) -> Narrowing {
    let reject =
        1 + usize::from(cfg.collector != CollectorMode::Local && cfg.connect == Connect::Ssh);
    let budget = crate::aws::provision::RULES_PER_DIRECTION.saturating_sub(2 * reject);
    crate::narrow::narrow(cfg.filter.as_deref(), budget).unwrap_or_else(|_| Narrowing {
        rules: Vec::new(),
        notes: Vec::new(),
        accept_all: true,
    })
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
    requests: Mutex<Option<Sender<Request>>>,
    results: Mutex<Receiver<String>>,
}

impl<'a> Watch<'a> {
    /// Watches the sources of `mirror` for a capture of `cfg`, reporting through `inner`.
    pub fn new(
        cfg: &CaptureConfig,
        mirror: &crate::mirror::Mirror,
        inner: &'a (dyn Progress + Sync),
    ) -> Self {
        let (req_tx, req_rx) = channel::<Request>();
        let (res_tx, res_rx) = channel::<String>();
        let work = Worker {
            profile: mirror.profile().map(str::to_string),
            region: mirror.region().to_string(),
            sessions: mirror.sessions.clone(),
            filter: cfg.filter.clone(),
            narrowing: narrowing(cfg),
        };
        let spawned = std::thread::Builder::new()
            .name("diagnose".into())
            .spawn(move || work.run(req_rx, res_tx));
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
        }
    }

    fn tick(&self, counters: &Counters) {
        if let Ok(rx) = self.results.lock() {
            while let Ok(sentence) = rx.try_recv() {
                log_msg!("{sentence}");
                self.inner.status(&sentence);
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

/// The diagnosis thread: its own runtime and AWS client, made on the first request.
struct Worker {
    profile: Option<String>,
    region: String,
    sessions: Vec<String>,
    filter: Option<String>,
    narrowing: Narrowing,
}

impl Worker {
    fn run(self, requests: Receiver<Request>, results: Sender<String>) {
        let Ok(rt) = client::runtime() else {
            log_msg!("could not start the mirror path diagnosis runtime");
            return;
        };
        let mut aws = None;
        let mut targets: Option<Vec<(String, String)>> = None;
        let filter = MirrorFilter {
            capture_filter: self.filter.as_deref(),
            rules: &self.narrowing.rules,
            accept_all: self.narrowing.accept_all,
        };
        for r in requests {
            let sentence = rt.block_on(async {
                if aws.is_none() {
                    match client::connect(self.profile.as_deref(), Some(&self.region)).await {
                        Ok(a) => aws = Some(a),
                        Err(e) => return format!("Nothing from {} for {} s; could not check its path: {e}", r.eni, r.secs),
                    }
                }
                let aws = aws.as_ref().expect("connected above");
                if targets.is_none() {
                    match path_facts::session_targets(aws, &self.sessions).await {
                        Ok(t) => targets = Some(t),
                        Err(u) => return crate::diagnose::Diagnosis::not_checked(u).sentence(&r.eni, r.secs),
                    }
                }
                let target = targets
                    .as_ref()
                    .and_then(|t| t.iter().find(|(s, _)| *s == r.eni))
                    .map(|(_, t)| t.clone());
                let Some(target) = target else {
                    return format!("Nothing from {} for {} s; its mirror target is not a network interface, so awsvpc cannot check the path.", r.eni, r.secs);
                };
                path_facts::diagnose(aws, &r.eni, &target, &filter)
                    .await
                    .sentence(&r.eni, r.secs)
            });
            if results.send(sentence).is_err() {
                break;
            }
        }
    }
}
