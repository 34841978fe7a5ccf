//! AWS clients from the user's configuration: profiles from ~/.aws (role_arn/source_profile,
//! sso-session, credential_process all through aws-config), AWS_PROFILE, AWS_REGION,
//! AWS_ENDPOINT_URL[_EC2|_SSM] and AWS_MAX_ATTEMPTS honoured; every call bounded in time.

use super::errors::explain;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Aws {
    pub ec2: aws_sdk_ec2::Client,
    pub sts: aws_sdk_sts::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub region: String,
    pub profile: Option<String>,
}

/// How long one AWS call may take, retries included: a query must never hang Wireshark.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// Builds the clients. Fails with one sentence when the profile does not exist or no
/// region can be found; credentials are resolved on the first call.
pub async fn connect(profile: Option<&str>, region: Option<&str>) -> Result<Aws, String> {
    crate::aws_profiles::check_shared_files()?;
    check_profile(profile)?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_timeout(OPERATION_TIMEOUT)
            .build(),
    );
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    if let Some(r) = region {
        if !is_region(r) {
            return Err(format!(
                "--region must be an AWS Region such as eu-west-1, not {r:?}."
            ));
        }
    }
    let config = loader.load().await;
    let region = config
        .region()
        .map(|r| r.to_string())
        .ok_or_else(|| match profile {
            Some(p) => {
                format!("No AWS Region: set --region, or region in profile {p:?} of ~/.aws/config.")
            }
            None => {
                "No AWS Region: set --region, AWS_REGION, or region in ~/.aws/config.".to_string()
            }
        })?;
    // One from AWS_REGION or the profile is checked too: the SDK would answer a raw
    // endpoint error ("must be a valid host label") on the first call.
    if !is_region(&region) {
        return Err(format!("The AWS Region {region:?} (from AWS_REGION or the profile's region) is not a Region name such as eu-west-1; correct it or set --region."));
    }
    Ok(Aws {
        ec2: aws_sdk_ec2::Client::new(&config),
        sts: aws_sdk_sts::Client::new(&config),
        ssm: aws_sdk_ssm::Client::new(&config),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
        region,
        profile: profile.map(str::to_string),
    })
}

/// A Region name as endpoints take it: lowercase letters, digits and inner hyphens
/// (`eu-west-1`, `us-gov-west-1`, `cn-north-1`).
fn is_region(r: &str) -> bool {
    (3..=32).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && r.starts_with(|c: char| c.is_ascii_lowercase())
        && !r.ends_with('-')
        && !r.contains("--")
}

/// The profile is one of this machine's: a check of local files only, made before any
/// network call of a capture.
pub fn check_profile(profile: Option<&str>) -> Result<(), String> {
    let Some(p) = profile else {
        return Ok(());
    };
    let known = crate::aws_profiles::profile_names();
    if known.iter().any(|k| k == p) {
        return Ok(());
    }
    Err(if known.is_empty() {
        format!("AWS profile {p:?} is not configured on this machine (no profiles in ~/.aws/config or ~/.aws/credentials); run aws configure --profile {p}.")
    } else {
        format!(
            "AWS profile {p:?} is not in ~/.aws/config or ~/.aws/credentials; choose one of: {}.",
            known.join(", ")
        )
    })
}

impl Aws {
    /// The caller's ARN, recorded on everything awsvpc creates. Also the first call that
    /// needs credentials, so credential problems surface here as one sentence.
    pub async fn caller_arn(&self) -> Result<String, String> {
        let who = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| explain("sts:GetCallerIdentity", &e, self.profile.as_deref()))?;
        Ok(who.arn().unwrap_or("unknown").to_string())
    }
}

/// A current-thread runtime for AWS work from the synchronous extcap code.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("Cannot start the AWS client runtime: {e}."))
}

/// A Session Manager control plane for `profile` in `region` (the profile's when `None`),
/// its client built on the capture's runtime `rt`.
pub fn ssm_control(
    rt: &Arc<tokio::runtime::Runtime>,
    profile: Option<&str>,
    region: Option<&str>,
) -> Result<crate::transport::ssm::session::Control, String> {
    let aws = rt.block_on(connect(profile, region))?;
    Ok(crate::transport::ssm::session::Control::on(
        rt.clone(),
        aws.ssm,
        profile.map(str::to_string),
    ))
}

/// The one runtime of a capture, for every AWS call it makes (the mirror, the collector's
/// Session Manager, the path diagnosis, the expiry refresher): multi-thread with one worker,
/// so the SDK's pooled connections are driven between calls and any thread may block on it.
/// Shared: it ends with its last user (the path diagnosis may still be finishing a call).
pub fn capture_runtime() -> Result<Arc<tokio::runtime::Runtime>, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("aws")
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|e| format!("Cannot start the AWS client runtime: {e}."))
}
