//! A live capture: the collector's receive thread fills batches from a fixed pool; this
//! thread decapsulates, filters and writes them to Wireshark's fifo. The pool is the memory
//! bound: when Wireshark reads slower than packets arrive, batches that find no free
//! buffer are dropped and counted, and the counts reach the toolbar and the pcapng
//! statistics.

use crate::batch::Batch;
use crate::config::CaptureConfig;
use crate::pipeline::{unix_now, Counters, Pipeline};
use crate::sink::pcapng::PcapngSink;
use crate::source::{DatagramSource, SourceError};
use crate::sources::SourceTable;
use crate::{log_info, log_msg};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Batches in flight between the receive thread and the writer: the queue's bound.
/// 8 × 64 datagrams × 9216 bytes = 4.7 MB of buffers, allocated once.
pub const POOL: usize = 8;
/// How long the receive thread waits for a free batch before receiving into a scratch
/// batch whose datagrams are dropped (and counted).
pub const FREE_WAIT: Duration = Duration::from_millis(500);

/// What the pipeline reports as it goes: status-bar steps and the live counters.
pub trait Progress {
    fn status(&self, text: &str);
    fn counters(&self, counters: &Counters);
}

/// Why a capture ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// SIGTERM/SIGINT.
    Stopped,
    /// Wireshark closed the fifo.
    ReaderGone,
    /// The source failed (a remote collector's tunnel could not be restored); the text is
    /// the sentence for the user.
    SourceFailed(String),
}

/// How often the writer asks the output whether its reader left, when no write would tell.
const READER_PROBE: Duration = Duration::from_millis(250);

/// Where a capture writes: Wireshark's fifo.
pub trait Output: Write + Send {
    /// Whether the reader closed its end. A write notices that by itself (`EPIPE`); this is
    /// for when nothing is written: an idle mirror, or datagrams the filter drops.
    fn reader_gone(&self) -> bool;
}

/// Wireshark's capture pipe, opened before the capture plan runs. The plan takes its writer
/// when the capture begins; a plan that fails before that leaves the pipe to the fatal path,
/// which writes the error line first and closes the pipe after.
pub trait Pipe {
    type Writer: Output;
    fn take_writer(&mut self) -> Option<Self::Writer>;
}

/// The error of a write given up because the capture was stopped while the reader took
/// nothing: the end is a stop, not a failure.
#[derive(Debug)]
pub struct WriteAbandoned;

impl std::fmt::Display for WriteAbandoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the capture was stopped while Wireshark was not reading its capture pipe")
    }
}

impl std::error::Error for WriteAbandoned {}

fn is_reader_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

fn is_abandoned(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|e| e.is::<WriteAbandoned>())
}

/// Runs a capture from `source` into `out` until `stop` is set, the reader goes away or
/// the source fails.
pub fn run<W: Output, S: DatagramSource>(
    cfg: &CaptureConfig,
    mut source: S,
    out: W,
    stop: Arc<AtomicBool>,
    progress: &(dyn Progress + Sync),
) -> io::Result<Ending> {
    let filter = crate::filter::compile_optional(cfg.filter.as_deref())
        .map_err(|e| io::Error::other(format!("Invalid capture filter: {e}.")))?;
    let counters = Arc::new(Counters::default());
    let start = unix_now();
    let sink = PcapngSink::new(out, &format!("awsvpc {}", env!("CARGO_PKG_VERSION")))?;
    let mut pipeline = Pipeline {
        sink,
        sources: SourceTable::new(cfg.sources.clone(), cfg.expected_vnis.clone()),
        filter,
        snaplen: cfg.snaplen,
        counters: counters.clone(),
        reported_drops: 0,
        local: Default::default(),
    };
    pipeline.sink.flush()?;

    let (free_tx, free_rx) = channel::<Box<Batch>>();
    let (full_tx, full_rx) = sync_channel::<Box<Batch>>(POOL);
    for _ in 0..POOL {
        let _ = free_tx.send(Box::new(Batch::new()));
    }
    let recycle = free_tx.clone();
    source.watch_stop(stop.clone());
    let described = source.describe();
    progress.status(&format!("{described}; waiting for mirrored packets"));
    log_msg!(
        "{}{}",
        lowercase_first(&described),
        cfg.filter
            .as_deref()
            .map(|f| format!(", capture filter \"{f}\""))
            .unwrap_or_default()
    );

    let mut first_packet = true;
    let writer_done = AtomicBool::new(false);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let ending = std::thread::scope(|scope| {
        // The receive thread: fills free batches; when none is free (the writer is blocked
        // on a slow reader) it receives into a scratch batch and counts what it throws away.
        let (rx_stop, rx_counters, failure) = (&stop, &counters, &failure);
        let receiver = scope.spawn(move || {
            let mut source = source;
            let mut discard = Batch::new();
            let status = |s: &str| progress.status(s);
            while !rx_stop.load(Ordering::Relaxed) {
                // A writer stalled briefly (scheduling, a slow fifo read) gets FREE_WAIT to
                // hand a batch back while the source's own buffer (socket, relay pipe) holds
                // the data; only a longer stall discards, counted. Measured over SSH: lossless
                // rate 53k -> 117k packets/s at 128 bytes (benches/ssh_throughput.sh).
                let mut batch = free_rx
                    .try_recv()
                    .or_else(|_| free_rx.recv_timeout(FREE_WAIT))
                    .ok();
                let target = batch.as_deref_mut().unwrap_or(&mut discard);
                match source.recv_batch(target, &status) {
                    Ok(0) => {}
                    Ok(n) => {
                        if let Some(b) = batch.take() {
                            if full_tx.send(b).is_err() {
                                break;
                            }
                        } else {
                            rx_counters
                                .queue_drops
                                .fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                    // A source's wait that gave way to the stop: not a failure.
                    Err(e @ SourceError::Stopped(_)) => {
                        log_info!("receiving ended by the stop: {e}");
                        break;
                    }
                    Err(e) => {
                        log_msg!("receiving failed: {e}");
                        *failure.lock().unwrap() = Some(e.to_string());
                        break;
                    }
                }
                if let Some(b) = batch {
                    let _ = free_tx.send(b);
                }
                rx_counters
                    .socket_drops
                    .store(source.drops(), Ordering::Relaxed);
            }
            // Dropping the source here (not at scope end) closes a remote tunnel promptly.
            drop(full_tx);
        });
        // Counters come from their own thread: they must keep reaching the toolbar and the
        // log while the writer is blocked on a reader that stopped reading.
        scope.spawn(|| {
            let mut last = Instant::now();
            while !writer_done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if last.elapsed() >= Duration::from_secs(1) {
                    last = Instant::now();
                    progress.counters(&counters);
                }
            }
        });
        let mut probed = Instant::now();
        let ending = (|| loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(Ending::Stopped);
            }
            if probed.elapsed() >= READER_PROBE {
                probed = Instant::now();
                if pipeline.sink.get_ref().reader_gone() {
                    return Ok(Ending::ReaderGone);
                }
            }
            match full_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(batch) => {
                    let r = pipeline.process(&batch).and_then(|_| pipeline.sink.flush());
                    let _ = recycle.send(batch);
                    match r {
                        Ok(()) => {}
                        Err(e) if is_reader_gone(&e) => return Ok(Ending::ReaderGone),
                        Err(e) if is_abandoned(&e) => return Ok(Ending::Stopped),
                        Err(e) => return Err(e),
                    }
                    if first_packet && counters.packets.load(Ordering::Relaxed) > 0 {
                        first_packet = false;
                        progress.status("Capturing mirrored packets");
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Ok(match failure.lock().unwrap().take() {
                        Some(why) => Ending::SourceFailed(why),
                        None => Ending::Stopped,
                    })
                }
            }
        })();
        writer_done.store(true, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let _ = receiver.join();
        ending
    })?;
    stop.store(true, Ordering::Relaxed);
    // Drain what was already received, then say how it went.
    if ending != Ending::ReaderGone {
        while let Ok(batch) = full_rx.try_recv() {
            if pipeline.process(&batch).is_err() {
                break;
            }
        }
    }
    let final_stats = pipeline
        .write_statistics(start)
        .and_then(|_| pipeline.sink.flush());
    if let Err(e) = final_stats {
        if !is_reader_gone(&e) && !is_abandoned(&e) {
            log_info!("could not write the final statistics: {e}");
        }
    }
    for (key, n) in pipeline.sources.unexpected() {
        log_msg!("{n} datagrams from unexpected mirror source {key} were not written");
    }
    log_msg!("capture ended ({:?}): {}", ending, counters.full());
    progress.counters(&counters);
    progress.status(&format!("Capture ended: {}", counters.summary()));
    Ok(ending)
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}
