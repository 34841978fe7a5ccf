//! One place that turns AWS SDK errors into the one sentence a user sees: what went wrong
//! and what to do about it. Below the control plane (`crate::aws`, which names it
//! `aws::errors`) and the transports, since the Session Manager link words its own calls.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The error code AWS returned, if the failure came from the service.
pub fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

pub fn is_not_found(code: &str) -> bool {
    code.ends_with(".NotFound")
        || code.ends_with("NotFound")
        || code == "InvalidInstanceID.Malformed"
}

/// In use by another resource: teardown waits and retries. AWS and emulators spell these
/// differently (`TrafficMirrorTargetInUseException`, `InvalidTrafficMirrorTargetInUse`, …).
pub fn is_in_use(code: &str) -> bool {
    code.contains("InUse") || code == "DependencyViolation"
}

pub fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "RequestLimitExceeded"
            | "Throttling"
            | "ThrottlingException"
            | "TooManyRequestsException"
            | "RequestThrottled"
    )
}

/// One sentence for a failed call `op` (e.g. `ec2:CreateTrafficMirrorSession`).
pub fn explain<E, R>(op: &str, e: &SdkError<E, R>, profile: Option<&str>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let login = match profile {
        Some(p) => format!("aws sso login --profile {p}"),
        None => "aws sso login".to_string(),
    };
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let code = err.code().unwrap_or("Unknown");
            let msg = err.message().unwrap_or("").trim_end_matches('.');
            match code {
                "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => format!(
                    "Permission missing: AWS denied {op}; grant it to your role (packaging/iam-policy.json lists every permission awsvpc needs)."
                ),
                "AuthFailure" | "InvalidClientTokenId" | "SignatureDoesNotMatch" | "UnrecognizedClientException" => format!(
                    "AWS rejected the credentials for {op} ({code}); check the profile's keys or run {login}."
                ),
                "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => {
                    format!("The AWS session has expired; run {login} and start the capture again.")
                }
                c if is_throttling(c) => format!("AWS is throttling {op}; wait a minute and start the capture again."),
                c if c.contains("LimitExceeded") => format!("AWS quota reached for {op}: {msg}; remove unused traffic mirror resources (awsvpc cleanup) or choose fewer ENIs."),
                "OptInRequired" => format!("The region is not enabled for this account ({op}); enable it in the AWS console or choose another --region."),
                _ => format!("{op} failed: {code}: {msg}."),
            }
        }
        SdkError::TimeoutError(_) => {
            format!("AWS did not answer {op} in time; check the network or proxy and try again.")
        }
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => format!(
            "Cannot reach the AWS endpoint for {op}; check the network, proxy or AWS_ENDPOINT_URL."
        ),
        other => {
            let detail = format!("{}", DisplayErrorContext(other));
            let lower = detail.to_ascii_lowercase();
            let of = match profile {
                Some(p) => format!(" of profile {p}"),
                None => String::new(),
            };
            if lower.contains("identity resolver timed out") {
                format!("The AWS credentials{of} did not arrive in time (its credential_process, SSO or role did not answer); run that command by hand or fix it in ~/.aws/config, then start the capture again.")
            } else if lower.contains("credential_process")
                || lower.contains("credentialprocess")
                || lower.contains("external process")
            {
                format!("The credential_process{of} did not print AWS credentials (it failed, or printed something other than their JSON); fix the command in ~/.aws/config so that it prints the JSON the AWS CLI documents.")
            } else if lower.contains("sso")
                && (lower.contains("expired") || lower.contains("refresh"))
            {
                format!("The SSO session has expired; run {login} and start the capture again.")
            } else if lower.contains("no credentials")
                || lower.contains("credentials provider")
                || lower.contains("failed to load credentials")
                || lower.contains("the credential provider was not enabled")
            {
                "No AWS credentials found; choose a profile with --profile, run aws configure, or set AWS_ACCESS_KEY_ID.".to_string()
            } else {
                format!("{op} failed: {}.", excerpt(&detail))
            }
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An SDK error chain on one line and at most 200 characters: what an endpoint or a helper
/// program said can be of any length.
fn excerpt(detail: &str) -> String {
    let line: String = one_line(detail)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}
