//! The relay client, once for every transport: start the relay and wait (bounded) for its
//! stream, move its records into the capture's batches, notice a lost tunnel (end of
//! stream, or nothing for [`SILENCE`], not even the relay's 1 s heartbeat), reconnect once,
//! and carry the relay's drop counter across. A [`Link`] says how a connection is made and
//! read and how its failures are worded: the system `ssh` (`super::ssh`), the pinned
//! in-process SSH to a launched collector (`super::pinned`), a Session Manager port session
//! (`super::ssm::collector`).

use crate::batch::Batch;
use crate::log_msg;
use crate::relay::stream::{Decoder, Kind, StreamError};
use crate::relay::RelayOptions;
use crate::source::{DatagramSource, SourceError};
use crate::transport::{RECONNECT_GRACE, SILENCE};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a new connection may take to start the relay (TCP, the SSH handshake or the
/// session, python).
pub const START_LIMIT: Duration = Duration::from_secs(30);
/// The longest wait of one read: the receive thread looks at its stop flag this often.
const POLL: Duration = Duration::from_millis(100);

/// How reading a connection, or the stream in it, failed.
pub enum Cut {
    /// The connection ended, broke or went silent: the tunnel may come back. The reason,
    /// for the log and the status bar ("the connection closed").
    Tunnel(String),
    /// A sentence for the user; another connection will not help.
    Fatal(String),
}

/// The words the client's sentences take from the link.
pub struct Words {
    /// What is lost: "SSH tunnel", "SSM session".
    pub tunnel: &'static str,
    /// What to check after a second loss: "the network path", "its SSM agent".
    pub check: &'static str,
    /// After "Reconnected to <name>": "", " over SSM".
    pub reconnected: &'static str,
}

/// One connection attempt, as the client asks a link for it.
pub struct Attempt<'a> {
    pub relay: &'a RelayOptions,
    /// A reconnect to a collector already up.
    pub again: bool,
    pub status: &'a dyn Fn(&str),
    /// The capture's stop flag, for the link's own waits.
    pub stop: Option<&'a AtomicBool>,
}

/// One way to reach a collector and run the relay there. A link holds at most one
/// connection; dropping it ends that connection.
pub trait Link: Send {
    /// The collector as sentences name it.
    fn name(&self) -> &str;
    fn words(&self) -> Words;
    /// Makes a connection and starts the relay. `Ok(false)`: the stop flag was set
    /// meanwhile.
    fn connect(&mut self, attempt: &Attempt) -> Result<bool, String>;
    /// Moves what the connection delivers into `into`, waiting at most `wait` while nothing
    /// is there. `Ok(false)`: nothing came.
    fn read(&mut self, into: &mut Decoder, wait: Duration) -> Result<bool, Cut>;
    /// Since when [`START_LIMIT`] counts; `None` while a wait of the link's own (a booting
    /// collector) runs.
    fn start_clock(&self) -> Option<Instant>;
    /// The status bar's text while the connection is not made yet, if it has one.
    fn waiting(&self) -> Option<String> {
        None
    }
    /// The sentence for a connection whose first bytes are not the relay's stream.
    fn not_a_relay(&self, e: &StreamError) -> String;
    /// The sentence for a connection that did not start the relay within [`START_LIMIT`].
    fn no_answer(&self) -> String;
    /// Lets a connection that failed to start finish by itself and explains its end in one
    /// sentence; `unparsed`: what it printed that was not the stream.
    fn explain_end(&mut self, unparsed: &str) -> String;
    /// Ends the connection at once; the last thing it said, for a lost tunnel's detail.
    fn close(&mut self) -> Option<String>;
    /// The relay runs: what follows "over" in the log ("SSH", "SSM session …").
    fn running(&mut self) -> String;
    /// After each receive, with the datagrams it delivered: the link's own reports.
    fn progress(&mut self, _delivered: usize, _status: &dyn Fn(&str)) {}
    /// What the status bar says while waiting for the first packet.
    fn describe(&self, relay: &RelayOptions) -> String;
}

/// A remote collector's relay through a [`Link`]: its datagrams, kernel timestamps and
/// drop counts, with loss detection and one reconnect.
pub struct RelayClient<L: Link + ?Sized> {
    link: Box<L>,
    relay: RelayOptions,
    decoder: Decoder,
    /// Drops counted by earlier relay processes (each starts at zero).
    drops_before: u64,
    drops_now: u32,
    last_seen: Instant,
    last_call: Instant,
    reconnected_at: Option<Instant>,
    /// The capture's stop flag, for the reconnect's waits.
    stop: Option<Arc<AtomicBool>>,
}

impl<L: Link + ?Sized> RelayClient<L> {
    /// Connects through `link` and starts the relay, waiting (bounded) for its stream.
    /// `None` when `stop` was set while connecting.
    pub(crate) fn open(
        link: Box<L>,
        relay: RelayOptions,
        status: &dyn Fn(&str),
        stop: &AtomicBool,
    ) -> Result<Option<Self>, String> {
        let mut c = RelayClient {
            link,
            relay,
            decoder: Decoder::new(),
            drops_before: 0,
            drops_now: 0,
            last_seen: Instant::now(),
            last_call: Instant::now(),
            reconnected_at: None,
            stop: None,
        };
        match c.start(status, Some(stop), false) {
            Ok(()) => Ok(Some(c)),
            Err(SourceError::Stopped(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn link(&self) -> &L {
        &self.link
    }

    /// Connects and waits for the relay's stream. `again`: a reconnect to a collector
    /// already up.
    fn start(
        &mut self,
        status: &dyn Fn(&str),
        stop: Option<&AtomicBool>,
        again: bool,
    ) -> Result<(), SourceError> {
        self.decoder.reset();
        let attempt = Attempt {
            relay: &self.relay,
            again,
            status,
            stop,
        };
        let doing = |name: &str| {
            let verb = if again { "reconnecting" } else { "connecting" };
            SourceError::Stopped(format!("{verb} to {name}"))
        };
        match self.link.connect(&attempt) {
            Ok(true) => {}
            Ok(false) => return Err(doing(self.link.name())),
            Err(why) => return Err(self.fail_start(stop, Some(why), doing)),
        }
        let mut told = Instant::now();
        loop {
            match self.decoder.find_start() {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    let why = self.link.not_a_relay(&e);
                    return Err(self.fail_start(stop, Some(why), doing));
                }
            }
            if is_set(stop) {
                self.link.close();
                return Err(doing(self.link.name()));
            }
            if told.elapsed() >= Duration::from_secs(1) {
                if let Some(text) = self.link.waiting() {
                    status(&text);
                    told = Instant::now();
                }
            }
            if self
                .link
                .start_clock()
                .is_some_and(|t| t.elapsed() > START_LIMIT)
            {
                let why = self.link.no_answer();
                return Err(self.fail_start(stop, Some(why), doing));
            }
            match self.link.read(&mut self.decoder, POLL) {
                Ok(_) => {}
                Err(Cut::Fatal(why)) => return Err(self.fail_start(stop, Some(why), doing)),
                Err(Cut::Tunnel(_)) => return Err(self.fail_start(stop, None, doing)),
            }
        }
        if self.decoder.skipped > 0 {
            log_msg!(
                "the collector printed {} bytes before the relay started (a login banner?); skipped",
                self.decoder.skipped
            );
        }
        self.last_seen = Instant::now();
        let over = self.link.running();
        log_msg!(
            "relay running on {} (UDP {}:{}) over {over}",
            self.link.name(),
            self.relay.listen_addr,
            self.relay.listen_port,
        );
        Ok(())
    }

    /// Ends a failed start. `why` is already the user's sentence; without one, the
    /// connection ended by itself and the link says why. A start that failed while the
    /// capture was stopping failed because of the stop (it ends ssh with the capture's
    /// signal, which reads as a closed connection): that is `doing`'s [`SourceError::Stopped`],
    /// and the connection is ended at once rather than explained.
    fn fail_start(
        &mut self,
        stop: Option<&AtomicBool>,
        why: Option<String>,
        doing: impl Fn(&str) -> SourceError,
    ) -> SourceError {
        if is_set(stop) {
            self.link.close();
            return doing(self.link.name());
        }
        SourceError::Failed(match why {
            Some(why) => {
                self.link.close();
                why
            }
            None => {
                let text = self.decoder.unparsed_text();
                self.link.explain_end(&text)
            }
        })
    }

    /// Moves whole records into `batch`.
    fn drain(&mut self, batch: &mut Batch) -> Result<(), Cut> {
        while !batch.is_full() {
            let r = match self.decoder.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    return Err(Cut::Fatal(format!(
                        "The relay stream from {} broke: {e}.",
                        self.link.name()
                    )))
                }
            };
            self.last_seen = Instant::now();
            self.drops_now = r.drops();
            match r.kind() {
                Kind::Datagram => {
                    if let Some(src) = r.source() {
                        batch.push(r.payload(), src, r.time());
                    }
                }
                Kind::Heartbeat | Kind::Other(_) => {}
                Kind::Error => {
                    // The relay's own error record (bind failures).
                    let text = String::from_utf8_lossy(r.payload()).trim().to_string();
                    return Err(Cut::Fatal(format!(
                        "The relay on {} stopped: {}.",
                        self.link.name(),
                        text.trim_end_matches('.')
                    )));
                }
            }
        }
        Ok(())
    }

    fn recover(&mut self, lost: Cut, status: &dyn Fn(&str)) -> Result<(), SourceError> {
        let why = match lost {
            Cut::Fatal(m) => return Err(SourceError::Failed(m)),
            Cut::Tunnel(why) => why,
        };
        let name = self.link.name().to_string();
        let Words {
            tunnel,
            check,
            reconnected,
        } = self.link.words();
        let detail = self
            .link
            .close()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        if self
            .reconnected_at
            .is_some_and(|t| t.elapsed() < RECONNECT_GRACE)
        {
            return Err(SourceError::Failed(format!(
                "The {tunnel} to {name} was lost again ({why}{detail}) soon after a reconnect; the capture stopped. Check the collector and {check}."
            )));
        }
        log_msg!("{tunnel} to {name} lost: {why}{detail}; reconnecting once");
        status(&format!("{tunnel} to {name} lost ({why}); reconnecting"));
        self.drops_before += u64::from(self.drops_now);
        self.drops_now = 0;
        self.reconnected_at = Some(Instant::now());
        // The lost relay keeps the port until its write watchdog (10 s) notices.
        self.relay.bind_wait_s = 15;
        let stop = self.stop.clone();
        match self.start(status, stop.as_deref(), true) {
            Ok(()) => {
                status(&format!("Reconnected to {name}{reconnected}; capturing"));
                Ok(())
            }
            Err(e @ SourceError::Stopped(_)) => Err(e),
            Err(e) => Err(SourceError::Failed(format!(
                "The {tunnel} to {name} was lost ({why}) and reconnecting failed: {}.",
                e.to_string().trim_end_matches('.')
            ))),
        }
    }
}

fn is_set(stop: Option<&AtomicBool>) -> bool {
    stop.is_some_and(|s| s.load(Ordering::Relaxed))
}

impl<L: Link + ?Sized> DatagramSource for RelayClient<L> {
    fn recv_batch(
        &mut self,
        batch: &mut Batch,
        status: &dyn Fn(&str),
    ) -> Result<usize, SourceError> {
        batch.clear();
        // Not called for a while (the capture was busy): silence meanwhile is not a loss.
        if self.last_call.elapsed() > SILENCE {
            self.last_seen = Instant::now();
        }
        self.last_call = Instant::now();
        let deadline = Instant::now() + POLL;
        loop {
            let before = batch.len();
            if let Err(lost) = self.drain(batch) {
                if batch.is_empty() {
                    self.recover(lost, status)?;
                    continue;
                }
                // Deliver what arrived first; the loss shows again on the next call.
                return Ok(batch.len());
            }
            self.link.progress(batch.len() - before, status);
            if !batch.is_empty() || self.decoder.has_record() {
                return Ok(batch.len());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.link.read(&mut self.decoder, left) {
                Ok(true) => {}
                // Silence counts only once the connection has nothing buffered: what
                // queued up while awsvpc was busy (provisioning) is not a loss.
                Ok(false) if self.last_seen.elapsed() > SILENCE => {
                    let lost = Cut::Tunnel(format!("nothing for {} s", SILENCE.as_secs()));
                    self.recover(lost, status)?;
                }
                Ok(false) if left.is_zero() => return Ok(0),
                Ok(false) => {}
                Err(cut) => self.recover(cut, status)?,
            }
        }
    }

    fn drops(&self) -> u64 {
        self.drops_before + u64::from(self.drops_now)
    }

    fn watch_stop(&mut self, stop: Arc<AtomicBool>) {
        self.stop = Some(stop);
    }

    fn describe(&self) -> String {
        self.link.describe(&self.relay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::stream::{encode, MAGIC};
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A link that plays scripted connections: each a list of reads, then its end.
    struct Script {
        connections: VecDeque<VecDeque<Vec<u8>>>,
        reads: Option<VecDeque<Vec<u8>>>,
        connects: Arc<Mutex<Vec<bool>>>,
    }

    impl Link for Script {
        fn name(&self) -> &str {
            "the collector c"
        }

        fn words(&self) -> Words {
            Words {
                tunnel: "test tunnel",
                check: "the test",
                reconnected: " again",
            }
        }

        fn connect(&mut self, a: &Attempt) -> Result<bool, String> {
            self.connects.lock().unwrap().push(a.again);
            self.reads = Some(self.connections.pop_front().ok_or("nobody answers.")?);
            Ok(true)
        }

        fn read(&mut self, into: &mut Decoder, _wait: Duration) -> Result<bool, Cut> {
            match self.reads.as_mut().and_then(VecDeque::pop_front) {
                Some(bytes) => {
                    into.space()[..bytes.len()].copy_from_slice(&bytes);
                    into.filled(bytes.len());
                    Ok(true)
                }
                None => Err(Cut::Tunnel("the connection closed".into())),
            }
        }

        fn start_clock(&self) -> Option<Instant> {
            None
        }

        fn not_a_relay(&self, e: &StreamError) -> String {
            format!("not a relay: {e}")
        }

        fn no_answer(&self) -> String {
            "no answer".into()
        }

        fn explain_end(&mut self, unparsed: &str) -> String {
            format!("ended before starting ({unparsed}).")
        }

        fn close(&mut self) -> Option<String> {
            self.reads.take().map(|_| "it said bye".into())
        }

        fn running(&mut self) -> String {
            "a test".into()
        }

        fn describe(&self, _relay: &RelayOptions) -> String {
            String::new()
        }
    }

    fn datagram(drops: u32, payload: &[u8]) -> Vec<u8> {
        let src = ("10.0.0.9".parse().unwrap(), 4789);
        encode(1, Some(src), drops, Duration::from_secs(7), payload)
    }

    type Opened = Result<Option<RelayClient<Script>>, String>;

    fn client(connections: Vec<Vec<Vec<u8>>>) -> (Opened, Arc<Mutex<Vec<bool>>>) {
        let connects = Arc::new(Mutex::new(Vec::new()));
        let link = Script {
            connections: connections.into_iter().map(VecDeque::from).collect(),
            reads: None,
            connects: connects.clone(),
        };
        let relay = RelayOptions {
            listen_addr: "0.0.0.0".parse().unwrap(),
            listen_port: 4789,
            snaplen: None,
            bind_wait_s: 0,
            on_host: None,
        };
        let stop = AtomicBool::new(false);
        (
            RelayClient::open(Box::new(link), relay, &|_| {}, &stop),
            connects,
        )
    }

    #[test]
    fn records_arrive_a_lost_tunnel_reconnects_once_and_drops_add_up() {
        let mut first = MAGIC.to_vec();
        first.extend(datagram(3, b"one"));
        let mut second = b"banner".to_vec();
        second.extend(MAGIC);
        second.extend(datagram(2, b"two"));
        let (c, connects) = client(vec![vec![first], vec![second]]);
        let mut c = c.unwrap().expect("not stopped");
        let mut batch = Batch::new();
        let said = Mutex::new(Vec::new());
        let status = |s: &str| said.lock().unwrap().push(s.to_string());
        assert_eq!(c.recv_batch(&mut batch, &status).unwrap(), 1);
        assert_eq!(batch.get(0).0, b"one");
        assert_eq!(c.drops(), 3);
        // The first connection ends: the second carries on, its drops counted on top.
        assert_eq!(c.recv_batch(&mut batch, &status).unwrap(), 1);
        assert_eq!(batch.get(0).0, b"two");
        assert_eq!(c.drops(), 5);
        assert_eq!(*connects.lock().unwrap(), [false, true]);
        assert_eq!(
            *said.lock().unwrap(),
            [
                "test tunnel to the collector c lost (the connection closed); reconnecting",
                "Reconnected to the collector c again; capturing"
            ]
        );
        // Lost again at once: the capture ends with one sentence in the link's words.
        let e = c.recv_batch(&mut batch, &status).unwrap_err().to_string();
        assert_eq!(
            e,
            "The test tunnel to the collector c was lost again (the connection closed (it said bye)) soon after a reconnect; the capture stopped. Check the collector and the test."
        );
    }

    #[test]
    fn a_failed_start_is_the_links_sentence() {
        let (c, _) = client(vec![vec![b"Welcome!".to_vec()]]);
        assert_eq!(c.err().unwrap(), "ended before starting (Welcome!).");
        let mut relay_error = MAGIC.to_vec();
        relay_error.extend(encode(3, None, 0, Duration::ZERO, b"port 4789 is in use."));
        let (c, _) = client(vec![vec![relay_error]]);
        let mut c = c.unwrap().unwrap();
        let e = c
            .recv_batch(&mut Batch::new(), &|_| {})
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "The relay on the collector c stopped: port 4789 is in use."
        );
    }
}
