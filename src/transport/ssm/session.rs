//! The Session Manager control plane for a port session to the relay: is the instance's
//! agent online (`DescribeInstanceInformation`), start a host collector's relay listener
//! (`SendCommand` with `AWS-RunShellScript`), open a session (`StartSession` with
//! `AWS-StartPortForwardingSession`), end it (`TerminateSession`). Each failure is one
//! sentence naming the problem and the fix.
//!
//! Why port forwarding and not `AWS-StartSSHSession` (SSH inside SSM): a port session to a
//! relay listening on the instance's loopback needs no sshd, no login key and no host-key
//! trust on the collector, only the agent and its instance profile; SSH inside SSM would
//! add all three and a second encryption layer for the same ~1 MB/s. What it needs instead
//! is a relay already listening: see [`super::collector::relay_listener_command`].
//!
//! The endpoint honours `AWS_ENDPOINT_URL_SSM` / `AWS_ENDPOINT_URL` through the SDK's own
//! configuration; the data channel goes to whatever `StreamUrl` StartSession returns.

use crate::aws_errors::{code, explain};
use aws_sdk_ssm::types::{InstanceInformationStringFilter, PingStatus};
use aws_sdk_ssm::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The AWS-managed document of a port session (basic mode with our client version).
pub const PORT_FORWARDING_DOCUMENT: &str = "AWS-StartPortForwardingSession";
/// The AWS-managed Run Command document that starts a host collector's relay listener.
pub const RUN_SHELL_DOCUMENT: &str = "AWS-RunShellScript";

/// What `StartSession` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedSession {
    pub session_id: String,
    pub token: String,
    pub stream_url: String,
}

/// The agent as Systems Manager last heard from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    Online {
        agent_version: String,
    },
    /// Registered but not online (`ConnectionLost`, `Inactive`).
    Offline {
        status: String,
        last_seen: String,
    },
    /// No agent ever reported from this instance.
    NotRegistered,
}

/// The sentence for an agent that is not online.
pub fn agent_problem(instance: &str, state: &AgentState) -> Option<String> {
    match state {
        AgentState::Online { .. } => None,
        AgentState::Offline { status, last_seen } => Some(format!(
            "The SSM agent on {instance} is offline ({status}, last seen {last_seen}); check its instance profile (AmazonSSMManagedInstanceCore) and its route to the ssm and ssmmessages endpoints."
        )),
        AgentState::NotRegistered => Some(format!(
            "{instance} is not managed by Systems Manager (no SSM agent has reported from it); give it an instance profile with AmazonSSMManagedInstanceCore and a route to the ssm, ssmmessages and ec2messages endpoints, then wait a minute for the agent to register."
        )),
    }
}

/// Control-plane calls from the capture's (synchronous) receive thread.
///
/// The client should not have been used on another runtime that is now idle: the SDK pools
/// HTTP connections, and a pooled connection's task lives on the runtime that opened it.
/// A capture builds its client on its one runtime and gives that runtime's handle
/// ([`Control::on`]); [`Control::new`] makes a runtime of its own (tests, benchmarks).
pub struct Control {
    client: Client,
    rt: Runtime,
    profile: Option<String>,
}

/// Where the control plane's calls run.
enum Runtime {
    Own(tokio::runtime::Runtime),
    /// The capture's one (multi-thread) runtime, which drives its tasks itself.
    Shared(std::sync::Arc<tokio::runtime::Runtime>),
}

impl Control {
    pub fn new(client: Client, profile: Option<String>) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("Cannot start the AWS client runtime: {e}."))?;
        Ok(Control {
            client,
            rt: Runtime::Own(rt),
            profile,
        })
    }

    /// A control plane on the capture's runtime `rt`, where `client` was built.
    pub fn on(
        rt: std::sync::Arc<tokio::runtime::Runtime>,
        client: Client,
        profile: Option<String>,
    ) -> Self {
        Control {
            client,
            rt: Runtime::Shared(rt),
            profile,
        }
    }

    /// Runs a future on this control plane's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match &self.rt {
            Runtime::Own(rt) => rt.block_on(f),
            Runtime::Shared(rt) => rt.block_on(f),
        }
    }

    pub fn agent_state(&self, instance: &str) -> Result<AgentState, String> {
        let filter = InstanceInformationStringFilter::builder()
            .key("InstanceIds")
            .values(instance)
            .build()
            .map_err(|e| format!("ssm:DescribeInstanceInformation: {e}."))?;
        let out = self
            .block_on(
                self.client
                    .describe_instance_information()
                    .filters(filter)
                    .send(),
            )
            .map_err(|e| {
                explain(
                    "ssm:DescribeInstanceInformation",
                    &e,
                    self.profile.as_deref(),
                )
            })?;
        let Some(info) = out
            .instance_information_list()
            .iter()
            .find(|i| i.instance_id() == Some(instance))
        else {
            return Ok(AgentState::NotRegistered);
        };
        Ok(match info.ping_status() {
            Some(PingStatus::Online) => AgentState::Online {
                agent_version: info.agent_version().unwrap_or("?").to_string(),
            },
            other => AgentState::Offline {
                status: other
                    .map(|s| s.as_str().to_string())
                    .unwrap_or("no status".into()),
                last_seen: info
                    .last_ping_date_time()
                    .and_then(|t| {
                        t.fmt(aws_sdk_ssm::primitives::DateTimeFormat::DateTime)
                            .ok()
                    })
                    .unwrap_or_else(|| "never".into()),
            },
        })
    }

    /// Waits (polling every `every`) until the agent is online, at most `limit`: an
    /// ephemeral collector's agent registers tens of seconds after boot. `Ok(None)` when
    /// `stop` was set.
    pub fn wait_online(
        &self,
        instance: &str,
        limit: Duration,
        every: Duration,
        status: &dyn Fn(&str),
        stop: Option<&AtomicBool>,
    ) -> Result<Option<String>, String> {
        let until = Instant::now() + limit;
        let mut said = false;
        loop {
            let state = self.agent_state(instance)?;
            let Some(problem) = agent_problem(instance, &state) else {
                let AgentState::Online { agent_version } = state else {
                    unreachable!("no problem means online")
                };
                return Ok(Some(agent_version));
            };
            if Instant::now() + every > until {
                return Err(problem);
            }
            if !said {
                status(&format!(
                    "Waiting for the SSM agent on {instance} to come online"
                ));
                said = true;
            }
            let next = Instant::now() + every;
            while Instant::now() < next {
                if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Opens a port session to `port` on the instance's loopback.
    pub fn start(&self, instance: &str, port: u16) -> Result<StartedSession, String> {
        let out = self
            .block_on(
                self.client
                    .start_session()
                    .target(instance)
                    .document_name(PORT_FORWARDING_DOCUMENT)
                    .parameters("portNumber", vec![port.to_string()])
                    .reason("awsvpc capture relay")
                    .send(),
            )
            .map_err(|e| match code(&e) {
                Some("TargetNotConnected") => format!(
                    "Session Manager cannot reach the SSM agent on {instance} (TargetNotConnected); check its instance profile (AmazonSSMManagedInstanceCore) and its route to the ssm and ssmmessages endpoints."
                ),
                Some("InvalidDocument") => format!(
                    "Session Manager refused the document {PORT_FORWARDING_DOCUMENT} for {instance}; the SSM agent there may be older than 2.3.672.0 (port forwarding), update it."
                ),
                _ => explain("ssm:StartSession", &e, self.profile.as_deref()),
            })?;
        let (Some(id), Some(token), Some(url)) =
            (out.session_id(), out.token_value(), out.stream_url())
        else {
            return Err(format!(
                "ssm:StartSession for {instance} returned no session id, token or stream URL."
            ));
        };
        Ok(StartedSession {
            session_id: id.to_string(),
            token: token.to_string(),
            stream_url: url.to_string(),
        })
    }

    /// Starts `command` on the instance through Run Command (`AWS-RunShellScript`, as root)
    /// and waits, at most `limit`, for it to finish. `Ok(false)`: `stop` was set.
    pub fn run_command(
        &self,
        instance: &str,
        command: &str,
        limit: Duration,
        stop: &AtomicBool,
    ) -> Result<bool, String> {
        let p = self.profile.as_deref();
        let sent = self
            .block_on(
                self.client
                    .send_command()
                    .instance_ids(instance)
                    .document_name(RUN_SHELL_DOCUMENT)
                    .parameters("commands", vec![command.to_string()])
                    .comment("awsvpc: start the relay listener for a capture")
                    .timeout_seconds(60)
                    .send(),
            )
            .map_err(|e| match code(&e) {
                Some("InvalidInstanceId") => format!(
                    "Run Command cannot reach {instance} (InvalidInstanceId: its SSM agent is not online or the instance is not managed); check its instance profile (AmazonSSMManagedInstanceCore)."
                ),
                _ => explain("ssm:SendCommand", &e, p),
            })?;
        let id = sent
            .command()
            .and_then(|c| c.command_id())
            .ok_or("ssm:SendCommand returned no command id.")?
            .to_string();
        let until = Instant::now() + limit;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let r = self.block_on(
                self.client
                    .get_command_invocation()
                    .command_id(&id)
                    .instance_id(instance)
                    .send(),
            );
            match r {
                Ok(inv) => match inv.status().map(|s| s.as_str()) {
                    Some("Success") => return Ok(true),
                    Some(
                        s @ ("Failed" | "Cancelled" | "TimedOut" | "Undeliverable" | "Terminated"),
                    ) => {
                        let said = inv
                            .standard_error_content()
                            .filter(|t| !t.trim().is_empty())
                            .or(inv.standard_output_content())
                            .unwrap_or("no output")
                            .trim()
                            .lines()
                            .last()
                            .unwrap_or("")
                            .to_string();
                        return Err(format!(
                            "The relay listener did not start on {instance}: Run Command {s} ({said}); check python3 there."
                        ));
                    }
                    _ => {}
                },
                // Just sent: the invocation may not be listed yet.
                Err(e) if code(&e) == Some("InvocationDoesNotExist") => {}
                Err(e) => return Err(explain("ssm:GetCommandInvocation", &e, p)),
            }
            if Instant::now() > until {
                return Err(format!(
                    "Run Command on {instance} did not finish within {} s; check the SSM agent there.",
                    limit.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Ends a session; best effort (a failure is only logged).
    pub fn terminate(&self, session_id: &str) {
        let r = self.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                self.client
                    .terminate_session()
                    .session_id(session_id)
                    .send(),
            )
            .await
        });
        match r {
            Ok(Ok(_)) => crate::log_info!("terminated SSM session {session_id}"),
            Ok(Err(e)) => crate::log_msg!(
                "could not terminate SSM session {session_id}: {}",
                explain("ssm:TerminateSession", &e, self.profile.as_deref())
            ),
            Err(_) => crate::log_msg!("ssm:TerminateSession {session_id} timed out"),
        }
    }
}
