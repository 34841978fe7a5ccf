//! Mirrored packets AWS dropped at the source: CloudWatch `NetworkPacketsSkipMirrorIn` and
//! `…Out` (namespace AWS/EC2, per instance), "packets that were not mirrored because of
//! production traffic taking priority" (Traffic Mirroring, traffic-mirror-cloudwatch.html).
//! One GetMetricData call (cloudwatch:GetMetricData) per poll for every source instance.

use super::client::Aws;
use crate::diagnose::facts::Unchecked;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use std::time::{Duration, SystemTime};

pub const METRICS: [&str; 2] = ["NetworkPacketsSkipMirrorIn", "NetworkPacketsSkipMirrorOut"];

/// Packets each of `instances` did not mirror in the `window` before `now`, in order.
pub async fn skipped(
    aws: &Aws,
    instances: &[String],
    window: Duration,
    now: SystemTime,
) -> Result<Vec<u64>, Unchecked> {
    let mut call = aws
        .cloudwatch
        .get_metric_data()
        .start_time(DateTime::from(now - window))
        .end_time(DateTime::from(now));
    for (i, instance) in instances.iter().enumerate() {
        for (m, name) in METRICS.iter().enumerate() {
            let metric = Metric::builder()
                .namespace("AWS/EC2")
                .metric_name(*name)
                .dimensions(
                    Dimension::builder()
                        .name("InstanceId")
                        .value(instance)
                        .build(),
                )
                .build();
            call = call.metric_data_queries(
                MetricDataQuery::builder()
                    .id(format!("i{i}m{m}"))
                    .metric_stat(
                        MetricStat::builder()
                            .metric(metric)
                            .period(60)
                            .stat("Sum")
                            .build(),
                    )
                    .return_data(true)
                    .build(),
            );
        }
    }
    let out = call.send().await.map_err(|e| Unchecked {
        what: "the SkipMirror metrics".into(),
        why: match super::errors::code(&e) {
            Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation") => {
                "permission cloudwatch:GetMetricData missing".into()
            }
            _ => super::errors::explain("cloudwatch:GetMetricData", &e, None)
                .trim_end_matches('.')
                .to_string(),
        },
    })?;
    let mut counts = vec![0u64; instances.len()];
    for r in out.metric_data_results() {
        let Some(i) = r
            .id()
            .and_then(|id| id.strip_prefix('i'))
            .and_then(|id| id.split('m').next())
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        if let Some(c) = counts.get_mut(i) {
            *c += r.values().iter().map(|v| v.max(0.0) as u64).sum::<u64>();
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
    use aws_sdk_cloudwatch::types::MetricDataResult;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    pub(crate) fn aws_with(cloudwatch: aws_sdk_cloudwatch::Client) -> Aws {
        let empty = Vec::<aws_smithy_mocks::Rule>::new();
        Aws {
            ec2: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &empty),
            sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &empty),
            ssm: mock_client!(aws_sdk_ssm, RuleMode::MatchAny, &empty),
            cloudwatch,
            region: "eu-west-1".into(),
            profile: None,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn sums_in_and_out_per_instance() {
        let data = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
            .match_requests(|r| {
                r.metric_data_queries().len() == 4
                    && r.metric_data_queries().iter().all(|q| {
                        q.metric_stat()
                            .and_then(|s| s.metric())
                            .is_some_and(|m| m.namespace() == Some("AWS/EC2"))
                    })
            })
            .then_output(|| {
                let r = |id: &str, v: &[f64]| {
                    MetricDataResult::builder()
                        .id(id)
                        .set_values(Some(v.to_vec()))
                        .build()
                };
                GetMetricDataOutput::builder()
                    .metric_data_results(r("i0m0", &[100.0, 45.0]))
                    .metric_data_results(r("i0m1", &[12_200.0]))
                    .metric_data_results(r("i1m0", &[]))
                    .build()
            });
        let aws = aws_with(mock_client!(
            aws_sdk_cloudwatch,
            RuleMode::MatchAny,
            &[&data]
        ));
        let got = rt()
            .block_on(skipped(
                &aws,
                &["i-a".into(), "i-b".into()],
                Duration::from_secs(300),
                SystemTime::now(),
            ))
            .unwrap();
        assert_eq!(got, vec![12_345, 0]);
    }

    #[test]
    fn a_denied_call_is_a_missing_permission() {
        let denied = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_error(|| {
            aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataError::generic(
                aws_sdk_cloudwatch::error::ErrorMetadata::builder()
                    .code("AccessDenied")
                    .message("User is not authorized")
                    .build(),
            )
        });
        let aws = aws_with(mock_client!(
            aws_sdk_cloudwatch,
            RuleMode::MatchAny,
            &[&denied]
        ));
        let e = rt()
            .block_on(skipped(
                &aws,
                &["i-a".into()],
                Duration::from_secs(300),
                SystemTime::now(),
            ))
            .unwrap_err();
        assert_eq!(e.why, "permission cloudwatch:GetMetricData missing");
    }
}
