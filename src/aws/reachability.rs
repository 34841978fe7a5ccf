//! `--diagnose reachability`: one EC2 Reachability Analyzer analysis from a silent source
//! ENI to its mirror target's ENI on UDP 4789, its answer translated into one sentence.
//! AWS bills each analysis ($0.10), so the diagnosis runs it at most once per source and
//! capture, and only when the user asked for it.
//!
//! The path and the analysis are resources: tagged with the run, in the run's ledger before
//! each create call (the ledger is shared with the capture, which tears them down with the
//! mirror if the capture stops first), and deleted as soon as the answer is read.

use super::client::Aws;
use super::ledger::{lock, Kind, Ledger};
use super::provision::{create, tag_spec};
use super::tags;
use crate::diagnose::facts::Unchecked;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    AnalysisComponent, AnalysisStatus, Explanation, NetworkInsightsAnalysis, Protocol, ResourceType,
};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an analysis may take before awsvpc gives up on it (AWS's usually finish within
/// a few minutes).
pub const BOUND: Duration = Duration::from_secs(300);
/// How often the analysis is asked for its status.
const POLL: Duration = Duration::from_secs(5);
const VXLAN_PORT: i32 = 4789;

const WHAT: &str = "the path with Reachability Analyzer";

fn unchecked<E, R>(op: &str, e: &SdkError<E, R>) -> Unchecked
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    super::path_facts::unchecked(WHAT, op, e)
}

/// A failed create, as the check that could not be made.
fn not_made(why: String) -> Unchecked {
    Unchecked {
        what: WHAT.into(),
        why: why.trim_end_matches('.').to_string(),
    }
}

/// Runs one analysis from `source` to `target` (ENI ids) and returns its sentence body
/// (the part after "Nothing from eni-… for 10 s: "). Deletes what it created.
pub async fn analyze(
    aws: &Aws,
    ledger: &Mutex<Ledger>,
    source: &str,
    target: &str,
) -> Result<String, Unchecked> {
    let (run_id, created_by) = {
        let l = lock(ledger);
        (l.run_id.clone(), l.created_by.clone())
    };
    let token = tags::client_token(&run_id, &format!("path-{source}"));
    let request = aws
        .ec2
        .create_network_insights_path()
        .source(source)
        .destination(target)
        .protocol(Protocol::Udp)
        .destination_port(VXLAN_PORT)
        .tag_specifications(tag_spec(
            ResourceType::NetworkInsightsPath,
            &run_id,
            &created_by,
        ))
        .client_token(&token)
        .send();
    let path = create(
        &mut { ledger },
        Kind::InsightsPath,
        &token,
        None,
        request,
        |o| o.network_insights_path()?.network_insights_path_id(),
        |e| unchecked("ec2:CreateNetworkInsightsPath", e).why,
    )
    .await
    .map_err(not_made)?;
    let outcome = run_analysis(aws, ledger, &run_id, &created_by, source, &path).await;
    // The path goes whatever the analysis did; a failure here is teardown's to finish.
    remove(aws, ledger, Kind::InsightsPath, &path).await;
    outcome.map(|a| sentence(&a, source, target))
}

async fn run_analysis(
    aws: &Aws,
    ledger: &Mutex<Ledger>,
    run_id: &str,
    created_by: &str,
    source: &str,
    path: &str,
) -> Result<NetworkInsightsAnalysis, Unchecked> {
    let token = tags::client_token(run_id, &format!("analysis-{source}"));
    let request = aws
        .ec2
        .start_network_insights_analysis()
        .network_insights_path_id(path)
        .tag_specifications(tag_spec(
            ResourceType::NetworkInsightsAnalysis,
            run_id,
            created_by,
        ))
        .client_token(&token)
        .send();
    let id = create(
        &mut { ledger },
        Kind::InsightsAnalysis,
        &token,
        None,
        request,
        |o| {
            o.network_insights_analysis()?
                .network_insights_analysis_id()
        },
        |e| unchecked("ec2:StartNetworkInsightsAnalysis", e).why,
    )
    .await
    .map_err(not_made)?;
    let result = wait(aws, &id).await;
    remove(aws, ledger, Kind::InsightsAnalysis, &id).await;
    result
}

/// Polls the analysis until it is no longer running, within [`BOUND`].
async fn wait(aws: &Aws, id: &str) -> Result<NetworkInsightsAnalysis, Unchecked> {
    let until = Instant::now() + BOUND;
    loop {
        let r = aws
            .ec2
            .describe_network_insights_analyses()
            .network_insights_analysis_ids(id)
            .send()
            .await
            .map_err(|e| unchecked("ec2:DescribeNetworkInsightsAnalyses", &e))?;
        let a = r
            .network_insights_analyses()
            .iter()
            .find(|a| a.network_insights_analysis_id() == Some(id));
        match a {
            Some(a) if a.status() != Some(&AnalysisStatus::Running) => return Ok(a.clone()),
            _ if Instant::now() + POLL > until => {
                return Err(Unchecked {
                    what: WHAT.into(),
                    why: format!("analysis {id} did not finish within {} s", BOUND.as_secs()),
                })
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

/// Deletes `id` now and marks it in the ledger; what fails is left to the capture's teardown.
async fn remove(aws: &Aws, ledger: &Mutex<Ledger>, kind: Kind, id: &str) {
    match super::teardown::delete_now(aws, kind, id).await {
        Ok(()) => {
            let mut l = lock(ledger);
            let index = l.entries.iter().position(|e| e.id.as_deref() == Some(id));
            if let Some(i) = index {
                let _ = l.mark_deleted(i);
            }
            crate::log_info!("removed {id}");
        }
        Err(why) => crate::log_msg!("could not remove {id} yet ({why}); teardown retries it"),
    }
}

fn id(c: Option<&AnalysisComponent>) -> Option<&str> {
    c.and_then(|c| c.id())
}

/// The analysis's answer in one sentence body, ending with a full stop.
pub fn sentence(a: &NetworkInsightsAnalysis, source: &str, target: &str) -> String {
    let aid = a.network_insights_analysis_id().unwrap_or("?");
    match a.status() {
        Some(AnalysisStatus::Failed) => {
            return format!(
                "Reachability Analyzer could not analyse the path from {source} to {target} ({}).",
                a.status_message().unwrap_or("no reason given")
            )
        }
        Some(AnalysisStatus::Succeeded) => {}
        _ => {
            return format!(
                "Reachability Analyzer gave no answer for {source} to {target} (analysis {aid})."
            )
        }
    }
    if a.network_path_found() == Some(true) {
        return format!(
            "Reachability Analyzer finds the path from {source} to {target} on UDP {VXLAN_PORT} open (analysis {aid}); {source} sent nothing that matches."
        );
    }
    let why: Vec<String> = a.explanations().iter().take(2).map(explain_one).collect();
    if why.is_empty() {
        return format!(
            "Reachability Analyzer finds no path from {source} to {target} on UDP {VXLAN_PORT} and gives no reason (analysis {aid})."
        );
    }
    format!(
        "Reachability Analyzer finds no path from {source} to {target} on UDP {VXLAN_PORT}: {} (analysis {aid}).",
        why.join("; ")
    )
}

/// One explanation: what blocks, named by its resource, with AWS's code for looking it up.
fn explain_one(e: &Explanation) -> String {
    let c = e.explanation_code().unwrap_or("UNKNOWN");
    let dir = match e.direction() {
        Some("ingress") => "inbound ",
        Some("egress") => "outbound ",
        _ => "",
    };
    let groups: Vec<&str> = e
        .security_groups()
        .iter()
        .filter_map(|g| g.id())
        .chain(id(e.security_group()))
        .collect();
    if !groups.is_empty() {
        let on = id(e.component())
            .or(id(e.network_interface()))
            .map(|c| format!(" of {c}"))
            .unwrap_or_default();
        return format!(
            "security group {}{on} admits no {dir}UDP {VXLAN_PORT}; add that rule ({c})",
            groups.join(", ")
        );
    }
    if let Some(acl) = id(e.acl()) {
        let rule = e
            .acl_rule()
            .and_then(|r| r.rule_number())
            .map(|n| format!(" (rule {n})"))
            .unwrap_or_default();
        let subnet = id(e.subnet())
            .map(|s| format!(" of subnet {s}"))
            .unwrap_or_default();
        return format!(
            "network ACL {acl}{subnet} denies {dir}UDP {VXLAN_PORT}{rule}; allow it with a lower-numbered rule ({c})"
        );
    }
    if let Some(rt) = id(e.route_table()).or(id(e.subnet_route_table())) {
        return format!("route table {rt} has no usable route to the target; add one ({c})");
    }
    let what = id(e.component())
        .map(|c| format!("{c}: "))
        .unwrap_or_default();
    format!("{what}{} ({c})", humanize(c))
}

/// `NO_ROUTE_TO_DESTINATION` → "no route to destination".
fn humanize(code: &str) -> String {
    code.split('_')
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::AnalysisAclRule;

    fn comp(id: &str) -> AnalysisComponent {
        AnalysisComponent::builder().id(id).build()
    }

    fn analysis(found: bool, explanations: Vec<Explanation>) -> NetworkInsightsAnalysis {
        NetworkInsightsAnalysis::builder()
            .network_insights_analysis_id("nia-1")
            .status(AnalysisStatus::Succeeded)
            .network_path_found(found)
            .set_explanations(Some(explanations))
            .build()
    }

    #[test]
    fn an_open_path_says_the_source_is_idle() {
        assert_eq!(
            sentence(&analysis(true, vec![]), "eni-s", "eni-t"),
            "Reachability Analyzer finds the path from eni-s to eni-t on UDP 4789 open (analysis nia-1); eni-s sent nothing that matches."
        );
    }

    #[test]
    fn a_security_group_names_the_group_and_the_interface() {
        let e = Explanation::builder()
            .explanation_code("ENI_SG_RULES_MISMATCH")
            .direction("ingress")
            .security_groups(comp("sg-9"))
            .component(comp("eni-t"))
            .build();
        assert_eq!(
            sentence(&analysis(false, vec![e]), "eni-s", "eni-t"),
            "Reachability Analyzer finds no path from eni-s to eni-t on UDP 4789: security group sg-9 of eni-t admits no inbound UDP 4789; add that rule (ENI_SG_RULES_MISMATCH) (analysis nia-1)."
        );
    }

    #[test]
    fn a_network_acl_names_its_rule() {
        let e = Explanation::builder()
            .explanation_code("SUBNET_ACL_RESTRICTION")
            .direction("ingress")
            .acl(comp("acl-4"))
            .acl_rule(AnalysisAclRule::builder().rule_number(90).build())
            .subnet(comp("subnet-7"))
            .build();
        let s = sentence(&analysis(false, vec![e]), "eni-s", "eni-t");
        assert!(
            s.contains("network ACL acl-4 of subnet subnet-7 denies inbound UDP 4789 (rule 90); allow it with a lower-numbered rule (SUBNET_ACL_RESTRICTION)"),
            "{s}"
        );
    }

    #[test]
    fn a_route_and_an_unknown_code() {
        let route = Explanation::builder()
            .explanation_code("NO_ROUTE_TO_DESTINATION")
            .route_table(comp("rtb-2"))
            .build();
        let other = Explanation::builder()
            .explanation_code("BAD_STATE_ATTACHMENT")
            .component(comp("tgw-attach-1"))
            .build();
        let s = sentence(&analysis(false, vec![route, other]), "eni-s", "eni-t");
        assert_eq!(
            s,
            "Reachability Analyzer finds no path from eni-s to eni-t on UDP 4789: route table rtb-2 has no usable route to the target; add one (NO_ROUTE_TO_DESTINATION); tgw-attach-1: bad state attachment (BAD_STATE_ATTACHMENT) (analysis nia-1)."
        );
    }

    #[test]
    fn a_failed_or_silent_analysis_says_so() {
        let failed = NetworkInsightsAnalysis::builder()
            .status(AnalysisStatus::Failed)
            .status_message("InternalError")
            .build();
        assert!(sentence(&failed, "a", "b")
            .contains("could not analyse the path from a to b (InternalError)"));
        assert!(sentence(&analysis(false, vec![]), "a", "b").contains("gives no reason"));
    }
}
