//! What the options dialog's reload buttons list: regions, VPCs, the ENIs of a VPC (with
//! their instance and whether they can be mirrored), launch templates and existing mirror
//! targets. Reloads are the only configuration calls that touch the network.

use super::client::Aws;
use super::errors::explain;
use super::support::eni_unsupported_reason;
use crate::manifest::ArgValue;
use crate::wire::ethernet::parse_mac;
use aws_sdk_ec2::types::{Filter, Tag};
use std::collections::HashMap;

fn name_tag(tags: &[Tag]) -> Option<&str> {
    tags.iter()
        .find(|t| t.key() == Some("Name"))
        .and_then(|t| t.value())
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn value(v: &str, display: String) -> ArgValue {
    ArgValue {
        value: v.to_string(),
        display,
        default: false,
        enabled: true,
    }
}

pub async fn regions(aws: &Aws) -> Result<Vec<ArgValue>, String> {
    let r = aws
        .ec2
        .describe_regions()
        .send()
        .await
        .map_err(|e| explain("ec2:DescribeRegions", &e, aws.profile.as_deref()))?;
    let mut v: Vec<ArgValue> = r
        .regions()
        .iter()
        .filter_map(|r| r.region_name())
        .map(|n| {
            let mut x = value(n, n.to_string());
            x.default = n == aws.region;
            x
        })
        .collect();
    v.sort_by(|a, b| a.value.cmp(&b.value));
    Ok(v)
}

pub async fn vpcs(aws: &Aws) -> Result<Vec<ArgValue>, String> {
    let mut out = Vec::new();
    let mut pages = aws.ec2.describe_vpcs().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| explain("ec2:DescribeVpcs", &e, aws.profile.as_deref()))?;
        for v in page.vpcs() {
            let Some(id) = v.vpc_id() else { continue };
            let mut d = id.to_string();
            if let Some(n) = name_tag(v.tags()) {
                d.push_str(&format!(" · {n}"));
            }
            if let Some(c) = v.cidr_block() {
                d.push_str(&format!(" · {c}"));
            }
            if v.is_default() == Some(true) {
                d.push_str(" (default)");
            }
            out.push(value(id, d));
        }
    }
    Ok(out)
}

/// An ENI as the capture needs it.
#[derive(Debug, Clone, Default)]
pub struct Eni {
    pub id: String,
    pub vpc: String,
    pub subnet: String,
    pub availability_zone: String,
    pub mac: Option<String>,
    pub private_ip: Option<String>,
    pub interface_type: String,
    pub instance_id: Option<String>,
    pub instance_name: Option<String>,
    pub instance_type: Option<String>,
}

impl Eni {
    /// Why it cannot be a mirror source, if it cannot.
    pub fn unsupported(&self) -> Option<String> {
        eni_unsupported_reason(&self.interface_type, self.instance_type.as_deref())
    }

    /// Why `eni` can be captured on its instance, or the sentence that refuses it: before
    /// anything is created or connected.
    pub fn on_host_refusal(&self, mirror_why: Option<&str>) -> Option<String> {
        let e = self;
        let cannot = mirror_why
            .map(|w| format!("AWS cannot mirror it ({w}) and "))
            .unwrap_or_default();
        if !e.interface_type.is_empty() && e.interface_type != "interface" {
            return Some(format!(
                "{} is a {} network interface that AWS manages: {cannot}no instance of yours runs on it to capture on; capture the instances that talk to it instead.",
                e.id,
                e.interface_type.replace('_', " ")
            ));
        }
        let Some(_) = &e.instance_id else {
            return Some(format!(
                "{} is attached to no instance of yours (a managed service's interface, such as RDS, or a detached one): {cannot}awsvpc has nothing to capture on; capture the instances that talk to it instead.",
                e.id
            ));
        };
        if e.mac.as_deref().and_then(parse_mac).is_none() {
            return Some(format!(
                "EC2 does not say {}'s MAC address, which on-host capture needs to find its device; choose another ENI.",
                e.id
            ));
        }
        None
    }

    /// What the options dialog says of an ENI: how it will be captured.
    pub fn how_captured(&self) -> Option<String> {
        let why = self.unsupported()?;
        Some(match self.on_host_refusal(Some(&why)) {
            None => format!("on-host capture (AWS cannot mirror it: {why})"),
            Some(_) => format!("cannot be captured: {why}, and no instance of yours runs on it"),
        })
    }

    pub fn display(&self) -> String {
        let mut d = self.id.clone();
        if let Some(i) = &self.instance_id {
            d.push_str(&format!(" · {i}"));
            if let Some(n) = &self.instance_name {
                d.push_str(&format!(" {n}"));
            }
        }
        if let Some(ip) = &self.private_ip {
            d.push_str(&format!(" · {ip}"));
        }
        if let Some(t) = &self.instance_type {
            d.push_str(&format!(" · {t}"));
        }
        if let Some(how) = self.how_captured() {
            d.push_str(&format!(" — {how}"));
        }
        d
    }
}

/// ENIs by id, or all ENIs of a VPC, with their instances' names and types.
pub async fn enis(aws: &Aws, vpc: Option<&str>, ids: &[String]) -> Result<Vec<Eni>, String> {
    let mut req = aws.ec2.describe_network_interfaces();
    if !ids.is_empty() {
        req = req.set_network_interface_ids(Some(ids.to_vec()));
    } else if let Some(v) = vpc {
        req = req.filters(filter("vpc-id", v));
    }
    let mut out = Vec::new();
    let mut pages = req.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| match super::errors::code(&e) {
            Some("InvalidNetworkInterfaceID.NotFound")
            | Some("InvalidNetworkInterfaceID.Malformed") => format!(
                "{} not found in region {}; check --eni and --region.",
                ids.join(", "),
                aws.region
            ),
            _ => explain("ec2:DescribeNetworkInterfaces", &e, aws.profile.as_deref()),
        })?;
        for n in page.network_interfaces() {
            let Some(id) = n.network_interface_id() else {
                continue;
            };
            // Emulators may ignore filters; never list another VPC's ENIs.
            if ids.is_empty() && vpc.is_some() && n.vpc_id() != vpc {
                continue;
            }
            out.push(Eni {
                id: id.to_string(),
                vpc: n.vpc_id().unwrap_or_default().to_string(),
                subnet: n.subnet_id().unwrap_or_default().to_string(),
                availability_zone: n.availability_zone().unwrap_or_default().to_string(),
                mac: n.mac_address().map(str::to_string),
                private_ip: n.private_ip_address().map(str::to_string),
                interface_type: n
                    .interface_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                instance_id: n
                    .attachment()
                    .and_then(|a| a.instance_id())
                    .map(str::to_string),
                ..Default::default()
            });
        }
    }
    let instance_ids: Vec<String> = out.iter().filter_map(|e| e.instance_id.clone()).collect();
    if !instance_ids.is_empty() {
        let mut info: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
        let mut pages = aws
            .ec2
            .describe_instances()
            .set_instance_ids(Some(instance_ids))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| explain("ec2:DescribeInstances", &e, aws.profile.as_deref()))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                if let Some(id) = i.instance_id() {
                    info.insert(
                        id.to_string(),
                        (
                            name_tag(i.tags()).map(str::to_string),
                            i.instance_type().map(|t| t.as_str().to_string()),
                        ),
                    );
                }
            }
        }
        for e in &mut out {
            if let Some((name, ty)) = e.instance_id.as_ref().and_then(|i| info.get(i)) {
                e.instance_name.clone_from(name);
                e.instance_type.clone_from(ty);
            }
        }
    }
    Ok(out)
}

pub async fn eni_values(aws: &Aws, vpc: Option<&str>) -> Result<Vec<ArgValue>, String> {
    Ok(enis(aws, vpc, &[])
        .await?
        .into_iter()
        .map(|e| {
            let mut v = value(&e.id, e.display());
            // Offered when it can be captured somehow: mirrored, or on its own instance.
            v.enabled = e.unsupported().is_none() || e.on_host_refusal(None).is_none();
            v
        })
        .collect())
}

pub async fn launch_templates(aws: &Aws) -> Result<Vec<ArgValue>, String> {
    let mut out = Vec::new();
    let mut pages = aws.ec2.describe_launch_templates().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| explain("ec2:DescribeLaunchTemplates", &e, aws.profile.as_deref()))?;
        for t in page.launch_templates() {
            if let Some(id) = t.launch_template_id() {
                out.push(value(
                    id,
                    format!("{id} · {}", t.launch_template_name().unwrap_or("")),
                ));
            }
        }
    }
    Ok(out)
}

pub async fn targets(aws: &Aws) -> Result<Vec<ArgValue>, String> {
    let mut out = Vec::new();
    let mut pages = aws
        .ec2
        .describe_traffic_mirror_targets()
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            explain(
                "ec2:DescribeTrafficMirrorTargets",
                &e,
                aws.profile.as_deref(),
            )
        })?;
        for t in page.traffic_mirror_targets() {
            let Some(id) = t.traffic_mirror_target_id() else {
                continue;
            };
            let what = t
                .network_interface_id()
                .or(t.network_load_balancer_arn())
                .or(t.gateway_load_balancer_endpoint_id())
                .unwrap_or("");
            let mut d = format!("{id} · {what}");
            if let Some(desc) = t.description().filter(|d| !d.is_empty()) {
                d.push_str(&format!(" · {desc}"));
            }
            out.push(value(id, d));
        }
    }
    Ok(out)
}

/// An existing mirror target's network interface: its private IPv4 address and instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInterface {
    pub eni: String,
    pub private_ip: Option<String>,
    pub instance: Option<String>,
}

/// Mirror target `id`, or the sentence saying it does not exist in this region.
pub async fn traffic_mirror_target(
    aws: &Aws,
    id: &str,
) -> Result<aws_sdk_ec2::types::TrafficMirrorTarget, String> {
    let not_found = || {
        format!(
            "Mirror target {id} not found in region {}; check --target-id.",
            aws.region
        )
    };
    let r = aws
        .ec2
        .describe_traffic_mirror_targets()
        .traffic_mirror_target_ids(id)
        .send()
        .await
        .map_err(|e| match super::errors::code(&e) {
            Some(c) if super::errors::is_not_found(c) => not_found(),
            _ => super::errors::explain(
                "ec2:DescribeTrafficMirrorTargets",
                &e,
                aws.profile.as_deref(),
            ),
        })?;
    // Matched here too: some emulators ignore the id.
    r.traffic_mirror_targets()
        .iter()
        .find(|t| t.traffic_mirror_target_id() == Some(id))
        .cloned()
        .ok_or_else(not_found)
}

/// The network interface behind mirror target `id`; `None` for a Network or Gateway Load
/// Balancer target, which has none.
pub async fn target_interface(aws: &Aws, id: &str) -> Result<Option<TargetInterface>, String> {
    let t = traffic_mirror_target(aws, id).await?;
    let Some(eni) = t.network_interface_id() else {
        return Ok(None);
    };
    let r = aws
        .ec2
        .describe_network_interfaces()
        .network_interface_ids(eni)
        .send()
        .await
        .map_err(|e| {
            super::errors::explain("ec2:DescribeNetworkInterfaces", &e, aws.profile.as_deref())
        })?;
    let n = r
        .network_interfaces()
        .iter()
        .find(|n| n.network_interface_id() == Some(eni));
    Ok(Some(TargetInterface {
        eni: eni.to_string(),
        private_ip: n.and_then(|n| n.private_ip_address()).map(str::to_string),
        instance: n
            .and_then(|n| n.attachment())
            .and_then(|a| a.instance_id())
            .map(str::to_string),
    }))
}

#[cfg(test)]
mod on_host_tests {
    use super::*;

    fn eni(kind: &str, instance: Option<&str>, ty: Option<&str>) -> Eni {
        Eni {
            id: "eni-1".into(),
            interface_type: kind.into(),
            instance_id: instance.map(str::to_string),
            instance_type: ty.map(str::to_string),
            mac: Some("02:00:00:00:00:01".into()),
            ..Default::default()
        }
    }

    #[test]
    fn managed_and_detached_interfaces_are_refused_in_one_sentence() {
        let nat = eni("nat_gateway", None, None)
            .on_host_refusal(Some("x"))
            .unwrap();
        assert!(
            nat.starts_with("eni-1 is a nat gateway network interface that AWS manages"),
            "{nat}"
        );
        let rds = eni("interface", None, None).on_host_refusal(None).unwrap();
        assert!(rds.contains("attached to no instance of yours"), "{rds}");
        assert!(eni("interface", Some("i-1"), Some("m7i.large"))
            .on_host_refusal(None)
            .is_none());
        let mut no_mac = eni("interface", Some("i-1"), None);
        no_mac.mac = None;
        assert!(no_mac
            .on_host_refusal(None)
            .unwrap()
            .contains("MAC address"));
    }

    #[test]
    fn the_dialog_says_how_an_eni_is_captured() {
        assert_eq!(
            eni("interface", Some("i-1"), Some("m5.large")).how_captured(),
            None
        );
        let m7i = eni("interface", Some("i-1"), Some("m7i.large"))
            .how_captured()
            .unwrap();
        assert!(
            m7i.starts_with("on-host capture (AWS cannot mirror it:"),
            "{m7i}"
        );
    }
}
