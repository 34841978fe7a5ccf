//! The relay client's link over SSH, once for both SSH clients: the system `ssh` to an
//! existing collector (`super::ssh`) and the pinned in-process client to a launched one
//! (`super::pinned`) differ only in how a session is made and how its end is explained
//! ([`SshSession`]); both deliver the relay's stream as an [`Incoming`].

use crate::relay::stream::{Decoder, StreamError};
use crate::relay::RelayOptions;
use crate::transport::inflow::{Ended, Incoming};
use crate::transport::relay_client::{Attempt, Cut, Link, Words};
use std::time::{Duration, Instant};

/// One SSH session running the relay.
pub(crate) trait SshSession: Sized + Send {
    /// How the collector is reached.
    type Settings: Send;
    /// The collector as sentences name it.
    fn name(settings: &Self::Settings) -> &str;
    /// Starts connecting and running the relay (`again`: a reconnect).
    fn spawn(settings: &Self::Settings, relay: &RelayOptions, again: bool) -> Result<Self, String>;
    /// The relay's stream.
    fn incoming(&mut self) -> &mut Incoming;
    /// Since when [`crate::transport::relay_client::START_LIMIT`] counts.
    fn start_clock(&self) -> Option<Instant>;
    /// The status bar's text while the connection is not made yet, if it has one.
    fn waiting(&self) -> Option<String> {
        None
    }
    /// The sentence for a session that did not start the relay in time.
    fn no_answer(settings: &Self::Settings) -> String;
    /// Lets the session end by itself (bounded) and explains its end in one sentence.
    fn explain_end(self, settings: &Self::Settings, unparsed: &str) -> String;
    /// Ends the session at once; the last thing it said.
    fn kill(self) -> Option<String>;
}

const SSH_WORDS: Words = Words {
    tunnel: "SSH tunnel",
    check: "the network path",
    reconnected: "",
};

/// A [`Link`] over an SSH client.
pub(crate) struct SshLink<S: SshSession> {
    settings: S::Settings,
    session: Option<S>,
}

impl<S: SshSession> SshLink<S> {
    pub(crate) fn new(settings: S::Settings) -> Self {
        SshLink {
            settings,
            session: None,
        }
    }
}

impl<S: SshSession> Link for SshLink<S> {
    fn name(&self) -> &str {
        S::name(&self.settings)
    }

    fn words(&self) -> Words {
        SSH_WORDS
    }

    fn connect(&mut self, a: &Attempt) -> Result<bool, String> {
        (a.status)(&format!(
            "Connecting to {} over SSH and starting the relay",
            self.name()
        ));
        self.session = Some(S::spawn(&self.settings, a.relay, a.again)?);
        Ok(true)
    }

    fn read(&mut self, into: &mut Decoder, wait: Duration) -> Result<bool, Cut> {
        let Some(s) = self.session.as_mut() else {
            return Err(Cut::Fatal("the SSH tunnel is closed".into()));
        };
        match s.incoming().read_into(into, wait) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(Ended::Eof) => Err(Cut::Tunnel("the connection closed".into())),
            Err(Ended::Failed(e)) => Err(Cut::Tunnel(e)),
        }
    }

    fn start_clock(&self) -> Option<Instant> {
        self.session.as_ref().and_then(S::start_clock)
    }

    fn waiting(&self) -> Option<String> {
        self.session.as_ref().and_then(S::waiting)
    }

    fn not_a_relay(&self, e: &StreamError) -> String {
        format!(
            "{}: {e}; check that its login shell starts commands without prompting.",
            capitalized(self.name())
        )
    }

    fn no_answer(&self) -> String {
        S::no_answer(&self.settings)
    }

    fn explain_end(&mut self, unparsed: &str) -> String {
        match self.session.take() {
            Some(s) => s.explain_end(&self.settings, unparsed),
            None => format!("The connection to {} closed.", self.name()),
        }
    }

    fn close(&mut self) -> Option<String> {
        self.session.take()?.kill()
    }

    fn running(&mut self) -> String {
        "SSH".into()
    }

    fn describe(&self, relay: &RelayOptions) -> String {
        format!(
            "Relay on {} (UDP {}) over SSH",
            self.name(),
            relay.listen_port
        )
    }
}

/// `name` at the start of a sentence.
pub(crate) fn capitalized(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The sentence for a collector without python3 (`exec python3` exited 127); `who` begins
/// it ("The collector …").
pub(crate) fn no_python3(who: &str) -> String {
    format!(
        "{who} has no python3, which the relay needs; install it (sudo dnf install python3, or sudo apt install python3-minimal) or use an Amazon Linux 2023 or Ubuntu 22.04+ collector."
    )
}
