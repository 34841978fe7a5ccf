//! Removing what a run created, in dependency order (Reachability Analyzer analyses and
//! paths, sessions, then filter rules, filters, targets, instances, security groups), retrying throttling and in-use errors with
//! backoff, counting NotFound as done, and always within a deadline: Wireshark kills an
//! extcap 30 s after asking it to stop.

use super::client::Aws;
use super::errors::{code, explain, is_in_use, is_not_found, is_throttling};
use super::ledger::{Kind, Ledger};
use crate::{log_info, log_msg};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use std::time::{Duration, Instant};

/// Teardown must finish inside Wireshark's 30 s kill window.
pub const DEADLINE: Duration = Duration::from_secs(25);

/// What a teardown could not remove.
#[derive(Debug, Default)]
pub struct Report {
    pub removed: Vec<String>,
    pub left: Vec<(String, String)>,
    /// Security groups still held by an instance that is terminating: EC2 frees them 30–90 s
    /// later, longer than a capture may take to stop (see [`Groups::Defer`]).
    pub deferred: Vec<String>,
}

/// What teardown does with a security group still in use by a terminating instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Groups {
    /// Retry until the deadline (`awsvpc cleanup`).
    Wait,
    /// Try for a few seconds, then report it in [`Report::deferred`] (a stopping capture,
    /// which hands it to a background `awsvpc cleanup`).
    Defer,
}

/// How long a deferring teardown tries a security group that is in use.
const GROUP_TRY: Duration = Duration::from_secs(3);

impl Report {
    pub fn sentence(&self, run_id: &str) -> Option<String> {
        if self.left.is_empty() {
            return None;
        }
        let what: Vec<String> = self
            .left
            .iter()
            .map(|(id, why)| format!("{id} ({why})"))
            .collect();
        Some(format!(
            "Teardown could not remove {}; run awsvpc cleanup --run-id {run_id} to finish it.",
            what.join(", ")
        ))
    }
}

enum Outcome {
    Done,
    Retry(String),
    Failed(String),
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    op: &str,
    r: Result<(), SdkError<E, R>>,
    profile: Option<&str>,
) -> Outcome {
    match r {
        Ok(()) => Outcome::Done,
        Err(e) => match code(&e) {
            Some(c) if is_not_found(c) => Outcome::Done,
            Some(c) if is_in_use(c) || is_throttling(c) => Outcome::Retry(c.to_string()),
            _ => match &e {
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                    Outcome::Retry(explain(op, &e, profile))
                }
                _ => Outcome::Failed(explain(op, &e, profile)),
            },
        },
    }
}

async fn delete_once(aws: &Aws, kind: Kind, id: &str) -> Outcome {
    let p = aws.profile.as_deref();
    let ec2 = &aws.ec2;
    match kind {
        Kind::InsightsAnalysis => classify(
            "ec2:DeleteNetworkInsightsAnalysis",
            ec2.delete_network_insights_analysis()
                .network_insights_analysis_id(id)
                .send()
                .await
                .map(|_| ()),
            p,
        ),
        Kind::InsightsPath => classify(
            "ec2:DeleteNetworkInsightsPath",
            ec2.delete_network_insights_path()
                .network_insights_path_id(id)
                .send()
                .await
                .map(|_| ()),
            p,
        ),
        Kind::Session => classify(
            "ec2:DeleteTrafficMirrorSession",
            ec2.delete_traffic_mirror_session()
                .traffic_mirror_session_id(id)
                .send()
                .await
                .map(|_| ()),
            p,
        ),
        Kind::FilterRule => classify(
            "ec2:DeleteTrafficMirrorFilterRule",
            ec2.delete_traffic_mirror_filter_rule()
                .traffic_mirror_filter_rule_id(id)
                .send()
                .await
                .map(|_| ()),
            p,
        ),
        Kind::Filter => classify(
            "ec2:DeleteTrafficMirrorFilter",
            ec2.delete_traffic_mirror_filter()
                .traffic_mirror_filter_id(id)
                .send()
                .await
                .map(|_| ()),
            p,
        ),
        Kind::Target => classify(
            "ec2:DeleteTrafficMirrorTarget",
            ec2.delete_traffic_mirror_target()
                .traffic_mirror_target_id(id)
                .send()
                .await
                .map(|_| ()),
            p,
        ),
        Kind::Instance => classify(
            "ec2:TerminateInstances",
            ec2.terminate_instances()
                .instance_ids(id)
                .send()
                .await
                .map(|_| ()),
            p,
        ),
        Kind::SecurityGroup => classify(
            "ec2:DeleteSecurityGroup",
            ec2.delete_security_group()
                .group_id(id)
                .send()
                .await
                .map(|_| ()),
            p,
        ),
    }
}

/// True once the session no longer exists: its target and filter can then be deleted.
async fn session_gone(aws: &Aws, id: &str) -> bool {
    match aws
        .ec2
        .describe_traffic_mirror_sessions()
        .traffic_mirror_session_ids(id)
        .send()
        .await
    {
        Ok(r) => r
            .traffic_mirror_sessions()
            .iter()
            .all(|s| s.traffic_mirror_session_id() != Some(id)),
        Err(e) => code(&e).is_some_and(is_not_found),
    }
}

/// Deletes one resource, retrying with backoff until `deadline`.
async fn delete(aws: &Aws, kind: Kind, id: &str, deadline: Instant) -> Result<(), String> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match delete_once(aws, kind, id).await {
            Outcome::Done => break,
            Outcome::Failed(why) => return Err(why),
            Outcome::Retry(why) => {
                if Instant::now() + backoff > deadline {
                    return Err(format!("still {why} at the deadline"));
                }
                log_info!("{id}: {why}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    if kind == Kind::Session {
        let mut wait = Duration::from_millis(100);
        while !session_gone(aws, id).await {
            if Instant::now() + wait > deadline {
                return Err("deleted but still listed at the deadline".into());
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }
    Ok(())
}

/// Deletes one resource now, outside a run's teardown (the diagnosis's own paths), with
/// the same retries for a few seconds.
pub async fn delete_now(aws: &Aws, kind: Kind, id: &str) -> Result<(), String> {
    delete(aws, kind, id, Instant::now() + Duration::from_secs(10)).await
}

/// A create whose answer was lost (timeout, broken connection) may have created the
/// resource. Everything a run creates carries its run id tag, so a search by that tag is the
/// authority: what it finds is added to the ledger, and the unanswered intents are settled.
async fn resolve_unknown_ids(aws: &Aws, ledger: &mut Ledger) {
    let unknown: Vec<usize> = ledger
        .pending()
        .into_iter()
        .filter(|(_, e)| e.id.is_none())
        .map(|(i, _)| i)
        .collect();
    if unknown.is_empty() {
        return;
    }
    let sel = super::cleanup::Selection {
        run_id: Some(ledger.run_id.clone()),
        ..Default::default()
    };
    match super::cleanup::find(aws, &sel).await {
        Ok(found) => {
            for f in found {
                if !ledger
                    .entries
                    .iter()
                    .any(|e| e.id.as_deref() == Some(f.id.as_str()))
                {
                    log_msg!(
                        "found {} by its run tag: its create call was never answered",
                        f.id
                    );
                    let _ = ledger.adopt(f.kind, &f.id);
                }
            }
            for i in unknown {
                let _ = ledger.void(i);
            }
        }
        Err(e) => log_msg!(
            "could not search for resources of run {}: {e}",
            ledger.run_id
        ),
    }
}

/// Removes everything the ledger lists that is not yet deleted. The ledger is updated as
/// it goes and its file removed when nothing is left.
pub async fn teardown(aws: &Aws, ledger: &mut Ledger, limit: Duration, groups: Groups) -> Report {
    let deadline = Instant::now() + limit;
    let mut report = Report::default();
    resolve_unknown_ids(aws, ledger).await;
    for kind in Kind::TEARDOWN_ORDER {
        let batch: Vec<(usize, Option<String>)> = ledger
            .pending()
            .into_iter()
            .filter(|(_, e)| e.kind == kind)
            .map(|(i, e)| (i, e.id.clone()))
            .collect();
        for (index, id) in batch {
            let Some(id) = id else {
                // Intent recorded, no answer seen: the resource may exist. Its tags carry
                // the run id, so `awsvpc cleanup --run-id` finds it; report rather than guess.
                report.left.push((
                    ledger.entries[index].client_token.clone(),
                    "created without a recorded id".into(),
                ));
                continue;
            };
            let until = match (kind, groups) {
                (Kind::SecurityGroup, Groups::Defer) => deadline.min(Instant::now() + GROUP_TRY),
                _ => deadline,
            };
            match delete(aws, kind, &id, until).await {
                Ok(()) => {
                    log_info!("removed {id}");
                    let _ = ledger.mark_deleted(index);
                    report.removed.push(id);
                }
                Err(why)
                    if kind == Kind::SecurityGroup
                        && groups == Groups::Defer
                        && until < deadline =>
                {
                    log_msg!("{id} is still in use by the terminating collector ({why}); it is removed later");
                    report.deferred.push(id);
                }
                Err(why) => {
                    log_msg!("could not remove {id}: {why}");
                    report.left.push((id, why));
                }
            }
        }
    }
    let _ = ledger.finish();
    report
}
