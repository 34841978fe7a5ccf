//! What the options dialog's reload buttons list: regions, VPCs, the ENIs of a VPC (with
//! their instance and whether they can be mirrored), launch templates and existing mirror
//! targets. Reloads are the only configuration calls that touch the network.

use super::client::Aws;
use super::errors::explain;
use super::support::eni_unsupported_reason;
use crate::manifest::ArgValue;
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
        if let Some(why) = self.unsupported() {
            d.push_str(&format!(" — cannot be mirrored: {why}"));
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
            v.enabled = e.unsupported().is_none();
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
