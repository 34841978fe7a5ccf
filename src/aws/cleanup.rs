//! `awsvpc cleanup` and the sweep at capture start: find what awsvpc tagged and remove it in
//! dependency order. Tags are matched here, on what Describe returned, so nothing untagged is
//! ever selected even where a service or emulator ignores tag filters.

use super::client::Aws;
use super::errors::explain;
use super::ledger::{Kind, Ledger};
use super::tags;
use crate::log_info;
use aws_sdk_ec2::types::{Filter, Tag};
use std::time::{Duration, SystemTime};

/// Which tagged resources to select.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub run_id: Option<String>,
    /// Only runs started longer ago than this.
    pub older_than: Option<Duration>,
    /// Only resources whose `awsvpc:expires` has passed.
    pub expired_only: bool,
    /// Only resources created by this principal (see [`principal`]).
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: Kind,
    pub id: String,
    pub run_id: String,
    pub created_by: String,
}

/// The stable part of a caller ARN: an assumed role's session name changes every login, so
/// `arn:aws:sts::1:assumed-role/R/alice` and `…/R/alice-2` are the same principal `…/R`.
pub fn principal(arn: &str) -> &str {
    match arn.find(":assumed-role/") {
        Some(i) => match arn[i + 14..].find('/') {
            Some(j) => &arn[..i + 14 + j],
            None => arn,
        },
        None => arn,
    }
}

/// When a run started, from its id (`YYYYMMDDhhmmss-…`).
pub fn run_started(run_id: &str) -> Option<SystemTime> {
    let d = run_id.get(..14)?;
    tags::parse_rfc3339(&format!(
        "{}-{}-{}T{}:{}:{}Z",
        &d[0..4],
        &d[4..6],
        &d[6..8],
        &d[8..10],
        &d[10..12],
        &d[12..14]
    ))
}

fn tag<'a>(t: &'a [Tag], key: &str) -> Option<&'a str> {
    t.iter()
        .find(|x| x.key() == Some(key))
        .and_then(|x| x.value())
}

impl Selection {
    /// Whether a resource with these tags is selected. Untagged resources never are.
    pub fn matches(&self, t: &[Tag], now: SystemTime) -> bool {
        if tag(t, tags::MANAGED) != Some("true") {
            return false;
        }
        let run = tag(t, tags::RUN_ID).unwrap_or("");
        if self.run_id.as_deref().is_some_and(|r| r != run) {
            return false;
        }
        if let Some(age) = self.older_than {
            match run_started(run) {
                Some(start) if now.duration_since(start).is_ok_and(|a| a >= age) => {}
                _ => return false,
            }
        }
        if self.expired_only {
            match tag(t, tags::EXPIRES).and_then(tags::parse_rfc3339) {
                Some(exp) if exp < now => {}
                _ => return false,
            }
        }
        if let Some(me) = &self.created_by {
            if principal(tag(t, tags::CREATED_BY).unwrap_or("")) != principal(me) {
                return false;
            }
        }
        true
    }
}

/// Every selected resource, in no particular order (teardown orders them).
pub async fn find(aws: &Aws, sel: &Selection) -> Result<Vec<Found>, String> {
    let now = SystemTime::now();
    let p = aws.profile.as_deref();
    let mut out = Vec::new();
    let mut push = |kind: Kind, id: Option<&str>, t: &[Tag]| {
        if let Some(id) = id {
            if sel.matches(t, now) {
                out.push(Found {
                    kind,
                    id: id.to_string(),
                    run_id: tag(t, tags::RUN_ID).unwrap_or("").to_string(),
                    created_by: tag(t, tags::CREATED_BY).unwrap_or("").to_string(),
                });
            }
        }
    };
    // Reachability Analyzer's analyses and paths (`--diagnose reachability`). A cleanup
    // that cannot list them (no permission for what it never used) still removes the mirror.
    let mut pages = aws
        .ec2
        .describe_network_insights_analyses()
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => {
                for a in page.network_insights_analyses() {
                    push(
                        Kind::InsightsAnalysis,
                        a.network_insights_analysis_id(),
                        a.tags(),
                    );
                }
            }
            Err(e) => {
                log_info!(
                    "not searched for Reachability Analyzer analyses: {}",
                    explain("ec2:DescribeNetworkInsightsAnalyses", &e, p)
                );
                break;
            }
        }
    }
    let mut pages = aws
        .ec2
        .describe_network_insights_paths()
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => {
                for n in page.network_insights_paths() {
                    push(Kind::InsightsPath, n.network_insights_path_id(), n.tags());
                }
            }
            Err(e) => {
                log_info!(
                    "not searched for Reachability Analyzer paths: {}",
                    explain("ec2:DescribeNetworkInsightsPaths", &e, p)
                );
                break;
            }
        }
    }
    let mut pages = aws
        .ec2
        .describe_traffic_mirror_sessions()
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| explain("ec2:DescribeTrafficMirrorSessions", &e, p))?;
        for s in page.traffic_mirror_sessions() {
            push(Kind::Session, s.traffic_mirror_session_id(), s.tags());
        }
    }
    let mut pages = aws
        .ec2
        .describe_traffic_mirror_filters()
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| explain("ec2:DescribeTrafficMirrorFilters", &e, p))?;
        for f in page.traffic_mirror_filters() {
            // A rule belongs to its filter: selected when the filter is.
            for r in f
                .ingress_filter_rules()
                .iter()
                .chain(f.egress_filter_rules())
            {
                push(
                    Kind::FilterRule,
                    r.traffic_mirror_filter_rule_id(),
                    f.tags(),
                );
            }
            push(Kind::Filter, f.traffic_mirror_filter_id(), f.tags());
        }
    }
    let mut pages = aws
        .ec2
        .describe_traffic_mirror_targets()
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| explain("ec2:DescribeTrafficMirrorTargets", &e, p))?;
        for t in page.traffic_mirror_targets() {
            push(Kind::Target, t.traffic_mirror_target_id(), t.tags());
        }
    }
    let managed = Filter::builder()
        .name("tag-key")
        .values(tags::MANAGED)
        .build();
    let mut pages = aws
        .ec2
        .describe_instances()
        .filters(managed.clone())
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| explain("ec2:DescribeInstances", &e, p))?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            let gone = i
                .state()
                .and_then(|s| s.name())
                .is_some_and(|n| n.as_str() == "terminated" || n.as_str() == "shutting-down");
            if !gone {
                push(Kind::Instance, i.instance_id(), i.tags());
            }
        }
    }
    let mut pages = aws
        .ec2
        .describe_security_groups()
        .filters(managed)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| explain("ec2:DescribeSecurityGroups", &e, p))?;
        for g in page.security_groups() {
            push(Kind::SecurityGroup, g.group_id(), g.tags());
        }
    }
    Ok(out)
}

/// A ledger (not written to disk) holding what `find` returned, for teardown.
pub fn ledger_of(found: &[Found], region: &str) -> Ledger {
    let mut l = Ledger::detached("cleanup", region);
    for f in found {
        // A detached ledger has no file; adopting cannot fail.
        let _ = l.adopt(f.kind, &f.id);
    }
    l
}

/// What [`remove`] found and, unless it was a dry run, what its teardown did.
pub struct Removal {
    pub found: Vec<Found>,
    pub report: Option<super::teardown::Report>,
}

/// `awsvpc cleanup`'s work, shared with the guardian: select by tag, remove in dependency
/// order (sessions first) within `limit`, waiting for security groups, then finish the
/// ledgers in `state` of runs that are now fully gone. Only what `sel` selects (tagged,
/// and with `--run-id` tagged with that run) is ever touched.
pub async fn remove(
    aws: &Aws,
    sel: &Selection,
    dry_run: bool,
    limit: Duration,
    state: &std::path::Path,
) -> Result<Removal, String> {
    let found = find(aws, sel).await?;
    if found.is_empty() || dry_run {
        return Ok(Removal {
            found,
            report: None,
        });
    }
    let mut l = ledger_of(&found, &aws.region);
    let report = super::teardown::teardown(aws, &mut l, limit, super::teardown::Groups::Wait).await;
    for mut led in Ledger::all_in(state) {
        if sel.run_id.as_ref().is_none_or(|r| *r == led.run_id) && led.region == aws.region {
            let remaining = led.entries.iter().any(|e| {
                !e.deleted
                    && e.id.as_ref().is_some_and(|id| !report.removed.contains(id))
                    && found.iter().any(|f| Some(&f.id) == e.id.as_ref())
            });
            if !remaining {
                for i in 0..led.entries.len() {
                    let _ = led.mark_deleted(i);
                }
                let _ = led.finish();
            }
        }
    }
    Ok(Removal {
        found,
        report: Some(report),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> Tag {
        Tag::builder().key(k).value(v).build()
    }

    #[test]
    fn only_tagged_resources_match() {
        let now = SystemTime::now();
        let all = Selection::default();
        assert!(!all.matches(&[], now), "untagged is never selected");
        assert!(!all.matches(&[t(tags::MANAGED, "false")], now));
        let mine = [
            t(tags::MANAGED, "true"),
            t(tags::RUN_ID, "20200101000000-abcd"),
            t(tags::CREATED_BY, "arn:aws:sts::1:assumed-role/Net/alice"),
            t(tags::EXPIRES, "2020-01-01T02:00:00Z"),
        ];
        assert!(all.matches(&mine, now));
        let by_run = Selection {
            run_id: Some("other".into()),
            ..Default::default()
        };
        assert!(!by_run.matches(&mine, now));
        let expired = Selection {
            expired_only: true,
            created_by: Some("arn:aws:sts::1:assumed-role/Net/alice-2".into()),
            ..Default::default()
        };
        assert!(
            expired.matches(&mine, now),
            "same role, new session name, expired"
        );
        let someone_else = Selection {
            created_by: Some("arn:aws:iam::1:user/bob".into()),
            ..Default::default()
        };
        assert!(!someone_else.matches(&mine, now));
        let old = Selection {
            older_than: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        assert!(old.matches(&mine, now));
        let young = Selection {
            older_than: Some(Duration::from_secs(3600 * 24 * 365 * 100)),
            ..Default::default()
        };
        assert!(!young.matches(&mine, now));
    }

    #[test]
    fn principals() {
        assert_eq!(
            principal("arn:aws:sts::1:assumed-role/Net/alice"),
            "arn:aws:sts::1:assumed-role/Net"
        );
        assert_eq!(
            principal("arn:aws:iam::1:user/bob"),
            "arn:aws:iam::1:user/bob"
        );
        assert!(run_started("20261122120000-abcd").is_some());
        assert!(run_started("garbage").is_none());
    }
}
