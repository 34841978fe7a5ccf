//! Several datagram sources as one: a capture that mirrors some ENIs (one collector) and
//! captures others on their own instances (one relay each) reads them all through this.
//! Each source runs on a thread of its own and hands over whole batches; the capture's
//! receive thread copies them into its own batch (at most 64 datagrams a time: the copy is
//! the price of not interleaving sources that block).

use super::{local::POLL, Batch, DatagramSource};
use crate::source::SourceError;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;

enum Msg {
    /// A filled batch from source `from`, to be handed back on its return channel.
    Batch {
        from: usize,
        batch: Box<Batch>,
    },
    Status(String),
    /// The source ended the capture: the sentence its error carries.
    Failed(SourceError),
}

struct Worker {
    back: Sender<Box<Batch>>,
    drops: Arc<AtomicU64>,
}

pub struct Merged {
    sources: Vec<Box<dyn DatagramSource>>,
    described: String,
    stop: Arc<AtomicBool>,
    workers: Vec<Worker>,
    rx: Option<Receiver<Msg>>,
    /// Set when the capture ends: the threads stop after their current receive.
    done: Arc<AtomicBool>,
}

impl Merged {
    pub fn new(sources: Vec<Box<dyn DatagramSource>>) -> Self {
        let described = sources
            .iter()
            .map(|s| s.describe())
            .collect::<Vec<_>>()
            .join("; ");
        Merged {
            sources,
            described,
            stop: Arc::new(AtomicBool::new(false)),
            workers: Vec::new(),
            rx: None,
            done: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts one thread per source, on the first receive.
    fn start(&mut self) -> io::Result<()> {
        // Bounded: a capture that falls behind makes the sources wait (and their own
        // buffers drop and count), not this queue grow.
        let (tx, rx) = sync_channel::<Msg>(4);
        for (i, mut source) in self.sources.drain(..).enumerate() {
            let (back_tx, back_rx) = channel::<Box<Batch>>();
            // Two batches per source: one being filled while the other is copied.
            for _ in 0..2 {
                let _ = back_tx.send(Box::new(Batch::new()));
            }
            let drops = Arc::new(AtomicU64::new(0));
            let (tx, d, done, stop) = (
                tx.clone(),
                drops.clone(),
                self.done.clone(),
                self.stop.clone(),
            );
            source.watch_stop(stop.clone());
            std::thread::Builder::new()
                .name(format!("source-{i}"))
                .spawn(move || run(i, source, tx, back_rx, d, done, stop))?;
            self.workers.push(Worker {
                back: back_tx,
                drops,
            });
        }
        self.rx = Some(rx);
        Ok(())
    }
}

fn run(
    i: usize,
    mut source: Box<dyn DatagramSource>,
    tx: SyncSender<Msg>,
    back: Receiver<Box<Batch>>,
    drops: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let status_tx = tx.clone();
    let status = move |s: &str| {
        let _ = status_tx.try_send(Msg::Status(s.to_string()));
    };
    // An empty batch is kept for the next receive: only filled ones travel.
    let mut spare: Option<Box<Batch>> = None;
    while !done.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        let mut batch = match spare.take() {
            Some(b) => b,
            None => match back.recv() {
                Ok(b) => b,
                Err(_) => return,
            },
        };
        let got = source.recv_batch(&mut batch, &status);
        drops.store(source.drops(), Ordering::Relaxed);
        match got {
            Ok(0) => spare = Some(batch),
            Ok(_) => {
                if tx.send(Msg::Batch { from: i, batch }).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Msg::Failed(e));
                return;
            }
        }
    }
}

impl DatagramSource for Merged {
    fn recv_batch(
        &mut self,
        batch: &mut Batch,
        status: &dyn Fn(&str),
    ) -> Result<usize, SourceError> {
        batch.clear();
        if self.rx.is_none() {
            self.start()?;
        }
        let Some(rx) = self.rx.as_ref() else {
            return Ok(0);
        };
        loop {
            match rx.recv_timeout(POLL) {
                Ok(Msg::Status(s)) => status(&s),
                Ok(Msg::Failed(e)) => return Err(e),
                Ok(Msg::Batch { from, batch: got }) => {
                    for i in 0..got.len() {
                        batch.push_from(&got, i);
                    }
                    let _ = self.workers[from].back.send(got);
                    return Ok(batch.len());
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(0),
                // The sources' threads end at the capture's stop, as they see it.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
                    if self.stop.load(Ordering::Relaxed) =>
                {
                    return Err(SourceError::Stopped("reading the capture's sources".into()))
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(SourceError::Failed("every capture source ended".into()))
                }
            }
        }
    }

    fn drops(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.drops.load(Ordering::Relaxed))
            .sum()
    }

    fn describe(&self) -> String {
        self.described.clone()
    }

    fn watch_stop(&mut self, stop: Arc<AtomicBool>) {
        self.stop = stop;
    }
}

impl Drop for Merged {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    /// Sends `n` one-byte datagrams marked `tag`, then nothing (or fails with `fail`).
    struct Fake {
        tag: u8,
        left: usize,
        drops: u64,
        fail: Option<&'static str>,
    }

    impl DatagramSource for Fake {
        fn recv_batch(
            &mut self,
            batch: &mut Batch,
            _: &dyn Fn(&str),
        ) -> Result<usize, SourceError> {
            batch.clear();
            if self.left == 0 {
                if let Some(f) = self.fail.take() {
                    return Err(SourceError::Failed(f.into()));
                }
                std::thread::sleep(Duration::from_millis(5));
                return Ok(0);
            }
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, self.tag));
            while self.left > 0 && batch.push(&[self.tag], ip, Duration::ZERO) {
                self.left -= 1;
            }
            Ok(batch.len())
        }
        fn drops(&self) -> u64 {
            self.drops
        }
        fn describe(&self) -> String {
            format!("fake {}", self.tag)
        }
    }

    fn fake(tag: u8, n: usize, drops: u64, fail: Option<&'static str>) -> Box<dyn DatagramSource> {
        Box::new(Fake {
            tag,
            left: n,
            drops,
            fail,
        })
    }

    #[test]
    fn every_datagram_of_every_source_arrives_once() {
        let mut m = Merged::new(vec![fake(1, 150, 3, None), fake(2, 70, 4, None)]);
        assert_eq!(m.describe(), "fake 1; fake 2");
        let mut b = Batch::new();
        let (mut ones, mut twos) = (0, 0);
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while ones + twos < 220 {
            assert!(std::time::Instant::now() < until, "{ones} + {twos}");
            m.recv_batch(&mut b, &|_| {}).unwrap();
            for i in 0..b.len() {
                match b.get(i).0 {
                    [1] => ones += 1,
                    [2] => twos += 1,
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!((ones, twos), (150, 70));
        assert_eq!(m.drops(), 7, "the sources' drops, summed");
    }

    #[test]
    fn a_failing_source_ends_the_capture_with_its_sentence() {
        let mut m = Merged::new(vec![fake(1, 0, 0, None), fake(2, 1, 0, Some("relay gone"))]);
        let mut b = Batch::new();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let e = loop {
            assert!(std::time::Instant::now() < until);
            if let Err(e) = m.recv_batch(&mut b, &|_| {}) {
                break e;
            }
        };
        assert_eq!(e.to_string(), "relay gone");
    }
}
