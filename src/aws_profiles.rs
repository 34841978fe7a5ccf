//! Profile and region lists for the options dialog, read from local files only: the
//! configuration call must answer in milliseconds and never touch the network.

use crate::manifest::ArgValue;
use std::path::PathBuf;

fn home() -> Option<PathBuf> {
    crate::sys::dirs::home()
}

fn config_path() -> Option<PathBuf> {
    std::env::var_os("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws/config")))
}

fn credentials_path() -> Option<PathBuf> {
    std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws/credentials")))
}

/// (profile name, region) pairs from the shared config and credentials files.
pub fn profiles_from(config: &str, credentials: &str) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in config.lines() {
        let l = line.trim();
        if l.starts_with('[') && l.ends_with(']') {
            let name = l[1..l.len() - 1].trim();
            current = if name == "default" {
                Some(upsert(&mut out, "default"))
            } else {
                // sso-session, services and other sections are not profiles.
                name.strip_prefix("profile ")
                    .map(|p| upsert(&mut out, p.trim()))
            };
        } else if let (Some(i), Some((k, v))) = (current, l.split_once('=')) {
            if k.trim() == "region" {
                out[i].1 = Some(v.trim().to_string());
            }
        }
    }
    for line in credentials.lines() {
        let l = line.trim();
        if l.starts_with('[') && l.ends_with(']') {
            upsert(&mut out, l[1..l.len() - 1].trim());
        }
    }
    out
}

fn upsert(v: &mut Vec<(String, Option<String>)>, name: &str) -> usize {
    match v.iter().position(|(n, _)| n == name) {
        Some(i) => i,
        None => {
            v.push((name.to_string(), None));
            v.len() - 1
        }
    }
}

fn local_profiles() -> Vec<(String, Option<String>)> {
    // Only a regular file of sane size: a link to /dev/zero, or a fifo nobody writes, must
    // not hang the configuration call or fill memory. Such a file is left out of the list;
    // a capture that would use it refuses with the sentence (check_shared_files).
    let read = |p: Option<PathBuf>| {
        crate::files::read_small_file(&p?, crate::files::MAX_CONFIG_FILE)
            .ok()
            .flatten()
    };
    profiles_from(
        &read(config_path()).unwrap_or_default(),
        &read(credentials_path()).unwrap_or_default(),
    )
}

/// The files the AWS SDK reads for a profile (shared config, credentials, the SSO token
/// cache) pass awsvpc's own checks before it is invoked: the SDK would read a link to
/// /dev/zero until memory ran out, or wait forever on a fifo.
pub fn check_shared_files() -> Result<(), String> {
    use crate::files::{check_small_file, MAX_CONFIG_FILE};
    for p in [config_path(), credentials_path()].into_iter().flatten() {
        check_small_file(&p, MAX_CONFIG_FILE)?;
    }
    if let Some(cache) = home().map(|h| h.join(".aws/sso/cache")) {
        for entry in std::fs::read_dir(cache).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "json") {
                check_small_file(&p, MAX_CONFIG_FILE)?;
            }
        }
    }
    Ok(())
}

/// Names of the profiles configured on this machine.
pub fn profile_names() -> Vec<String> {
    local_profiles().into_iter().map(|(n, _)| n).collect()
}

pub fn profile_values() -> Vec<ArgValue> {
    let mut profiles = local_profiles();
    profiles.sort_by(|a, b| (a.0 != "default", &a.0).cmp(&(b.0 != "default", &b.0)));
    let preferred = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    profiles
        .into_iter()
        .map(|(name, region)| ArgValue {
            display: match &region {
                Some(r) => format!("{name} ({r})"),
                None => name.clone(),
            },
            default: name == preferred,
            enabled: true,
            value: name,
        })
        .collect()
}

/// Commercial regions; opt-in regions beyond these come from a reload (DescribeRegions).
pub const REGIONS: &[(&str, &str)] = &[
    ("us-east-1", "US East (N. Virginia)"),
    ("us-east-2", "US East (Ohio)"),
    ("us-west-1", "US West (N. California)"),
    ("us-west-2", "US West (Oregon)"),
    ("af-south-1", "Africa (Cape Town)"),
    ("ap-east-1", "Asia Pacific (Hong Kong)"),
    ("ap-south-1", "Asia Pacific (Mumbai)"),
    ("ap-south-2", "Asia Pacific (Hyderabad)"),
    ("ap-southeast-1", "Asia Pacific (Singapore)"),
    ("ap-southeast-2", "Asia Pacific (Sydney)"),
    ("ap-southeast-3", "Asia Pacific (Jakarta)"),
    ("ap-southeast-4", "Asia Pacific (Melbourne)"),
    ("ap-southeast-5", "Asia Pacific (Malaysia)"),
    ("ap-southeast-7", "Asia Pacific (Thailand)"),
    ("ap-northeast-1", "Asia Pacific (Tokyo)"),
    ("ap-northeast-2", "Asia Pacific (Seoul)"),
    ("ap-northeast-3", "Asia Pacific (Osaka)"),
    ("ca-central-1", "Canada (Central)"),
    ("ca-west-1", "Canada West (Calgary)"),
    ("eu-central-1", "Europe (Frankfurt)"),
    ("eu-central-2", "Europe (Zurich)"),
    ("eu-west-1", "Europe (Ireland)"),
    ("eu-west-2", "Europe (London)"),
    ("eu-west-3", "Europe (Paris)"),
    ("eu-south-1", "Europe (Milan)"),
    ("eu-south-2", "Europe (Spain)"),
    ("eu-north-1", "Europe (Stockholm)"),
    ("il-central-1", "Israel (Tel Aviv)"),
    ("me-south-1", "Middle East (Bahrain)"),
    ("me-central-1", "Middle East (UAE)"),
    ("mx-central-1", "Mexico (Central)"),
    ("sa-east-1", "South America (São Paulo)"),
];

pub fn region_values() -> Vec<ArgValue> {
    REGIONS
        .iter()
        .map(|(code, name)| ArgValue {
            value: code.to_string(),
            display: format!("{code} — {name}"),
            default: false,
            enabled: true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_profiles_not_sso_sessions() {
        let config = "[default]\nregion = eu-west-1\n[profile prod]\nrole_arn = x\nsource_profile = default\nregion=us-east-2\n[sso-session corp]\nsso_region = us-east-1\n[services local]\n";
        let creds = "[default]\naws_access_key_id = A\n[lab]\n";
        let p = profiles_from(config, creds);
        assert_eq!(
            p,
            vec![
                ("default".into(), Some("eu-west-1".into())),
                ("prod".into(), Some("us-east-2".into())),
                ("lab".into(), None),
            ]
        );
    }
}
