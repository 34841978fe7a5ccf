//! The temporary collector of `--collector ephemeral`: an instance launched for one capture
//! in the first source ENI's subnet (same VPC and Availability Zone: no cross-AZ transfer),
//! with a security group of its own, the capture's user data (`crate::relay::user_data`) and
//! `InstanceInitiatedShutdownBehavior=terminate`, so that its watchdog's power-off removes
//! it. Its primary ENI becomes the mirror target.
//!
//! Like everything awsvpc creates, the group and the instance are in the run's ledger before
//! the create call and carry the run's tags; teardown terminates the instance and deletes
//! the group after it.

use super::client::Aws;
use super::errors::{code, explain};
use super::ledger::{Kind, Ledger};
use super::provision::{check_stop, create, hold_point, tag_spec};
use super::tags;
use crate::log_msg;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    HttpTokensState, IamInstanceProfileSpecification, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceStateName,
    InstanceType, IpPermission, IpRange, LaunchTemplateSpecification, ResourceType,
    ShutdownBehavior,
};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// The collector's instance type when neither `--instance-type` nor the launch template
/// names one: the smallest and cheapest current type (Graviton, 2 vCPU burstable, 0.5 GiB,
/// up to 5 Gbit/s). The relay needs one core at most; awsvpc uses no memory there.
pub const DEFAULT_INSTANCE_TYPE: &str = "t4g.nano";

/// The public SSM parameter of the latest Amazon Linux 2023 AMI for an architecture.
pub fn al2023_parameter(arch: &str) -> String {
    format!("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}")
}

/// The architecture of an instance type, from AWS's naming: Graviton families have a `g`
/// right after the generation digit (`t4g`, `c7gn`, `im4gn`, `x2gd`), and `a1` is Graviton 1.
pub fn architecture(instance_type: &str) -> &'static str {
    let family = instance_type.split('.').next().unwrap_or("");
    let graviton = family == "a1"
        || family
            .char_indices()
            .any(|(i, c)| c.is_ascii_digit() && family[i + 1..].starts_with('g'));
    if graviton {
        "arm64"
    } else {
        "x86_64"
    }
}

/// On-demand Linux price per hour in US East (N. Virginia) of the small types a collector
/// uses, for the status bar's estimate; other regions differ by a few percent.
pub fn hourly_usd(instance_type: &str) -> Option<f64> {
    Some(match instance_type {
        "t4g.nano" => 0.0042,
        "t4g.micro" => 0.0084,
        "t4g.small" => 0.0168,
        "t4g.medium" => 0.0336,
        "t3.nano" => 0.0052,
        "t3.micro" => 0.0104,
        "t3.small" => 0.0208,
        "t3.medium" => 0.0416,
        "t3a.nano" => 0.0047,
        "t3a.micro" => 0.0094,
        "t3a.small" => 0.0188,
        "c6gn.medium" => 0.0432,
        "c6gn.large" => 0.0864,
        "c5n.large" => 0.108,
        "m5.large" => 0.096,
        _ => return None,
    })
}

/// AWS's price of a public IPv4 address per hour.
pub const PUBLIC_IPV4_HOUR_USD: f64 = 0.005;

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    /// `--launch-template`: an id (`lt-…`) or a name; its default version.
    pub launch_template: Option<String>,
    /// `--instance-type`.
    pub instance_type: Option<String>,
    /// `--instance-profile`: a name or ARN.
    pub instance_profile: Option<String>,
    /// The `#cloud-config` text.
    pub user_data: String,
    /// UDP port of the mirror, open to the VPC's CIDRs.
    pub listen_port: u16,
    /// TCP port and source of SSH, for `--connect ssh`.
    pub ssh: Option<(u16, SshSource)>,
    /// Give the instance a public IPv4 address (SSH from outside the VPC).
    pub public_ip: bool,
    /// `--connect ssm`: the instance needs an instance profile for its SSM agent.
    pub needs_instance_profile: bool,
}

/// Where the collector's security group admits SSH from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshSource {
    /// `--ssh-allow`: a CIDR the user gave.
    Cidr(String),
    /// This machine's public address, asked of checkip.amazonaws.com only after every
    /// local file, the credentials and the AWS resources were checked: a wrong profile must
    /// not send the user after a network problem first.
    ThisMachine,
}

impl From<&str> for SshSource {
    fn from(cidr: &str) -> Self {
        SshSource::Cidr(cidr.to_string())
    }
}

/// A collector instance that was launched.
#[derive(Debug, Clone)]
pub struct Launched {
    pub instance_id: String,
    pub eni: String,
    pub private_ip: Option<String>,
    pub instance_type: String,
    pub security_group: String,
}

/// What the launch template provides, from its default version.
#[derive(Debug, Default)]
struct Template {
    id: String,
    image: Option<String>,
    instance_type: Option<String>,
    instance_profile: bool,
}

async fn template(aws: &Aws, name_or_id: &str) -> Result<Template, String> {
    let p = aws.profile.as_deref();
    let mut q = aws
        .ec2
        .describe_launch_template_versions()
        .versions("$Default");
    q = if name_or_id.starts_with("lt-") {
        q.launch_template_id(name_or_id)
    } else {
        q.launch_template_name(name_or_id)
    };
    let r = q.send().await.map_err(|e| match code(&e) {
        Some(c) if c.contains("NotFound") || c.contains("Malformed") => format!(
            "Launch template {name_or_id} not found in region {}; choose one with --launch-template (the reload lists them) or clear it.",
            aws.region
        ),
        _ => explain("ec2:DescribeLaunchTemplateVersions", &e, p),
    })?;
    let Some(v) = r.launch_template_versions().first() else {
        return Err(format!(
            "Launch template {name_or_id} not found in region {}; choose one with --launch-template (the reload lists them) or clear it.",
            aws.region
        ));
    };
    let data = v.launch_template_data();
    Ok(Template {
        id: v.launch_template_id().unwrap_or(name_or_id).to_string(),
        image: data.and_then(|d| d.image_id()).map(str::to_string),
        instance_type: data
            .and_then(|d| d.instance_type())
            .map(|t| t.as_str().to_string()),
        instance_profile: data.and_then(|d| d.iam_instance_profile()).is_some(),
    })
}

/// The latest Amazon Linux 2023 AMI for `arch`, from its public SSM parameter.
async fn al2023_image(aws: &Aws, arch: &str) -> Result<String, String> {
    let name = al2023_parameter(arch);
    let r = aws
        .ssm
        .get_parameter()
        .name(&name)
        .send()
        .await
        .map_err(|e| match code(&e) {
            Some("ParameterNotFound") => format!(
                "The Amazon Linux 2023 AMI parameter {name} does not exist in region {}; choose a launch template with an AMI (--launch-template).",
                aws.region
            ),
            _ => explain("ssm:GetParameter", &e, aws.profile.as_deref()),
        })?;
    r.parameter()
        .and_then(|p| p.value())
        .filter(|v| v.starts_with("ami-"))
        .map(str::to_string)
        .ok_or_else(|| format!("The SSM parameter {name} holds no AMI id."))
}

/// The VPC's IPv4 CIDR blocks: where mirrored VXLAN comes from.
async fn vpc_cidrs(aws: &Aws, vpc: &str) -> Result<Vec<String>, String> {
    let r = aws
        .ec2
        .describe_vpcs()
        .vpc_ids(vpc)
        .send()
        .await
        .map_err(|e| explain("ec2:DescribeVpcs", &e, aws.profile.as_deref()))?;
    let mut cidrs: Vec<String> = Vec::new();
    for v in r.vpcs().iter().filter(|v| v.vpc_id() == Some(vpc)) {
        cidrs.extend(v.cidr_block().map(str::to_string));
        for a in v.cidr_block_association_set() {
            let associated = a
                .cidr_block_state()
                .and_then(|s| s.state())
                .is_none_or(|s| s.as_str() == "associated");
            if let (true, Some(c)) = (associated, a.cidr_block()) {
                cidrs.push(c.to_string());
            }
        }
    }
    cidrs.sort();
    cidrs.dedup();
    if cidrs.is_empty() {
        return Err(format!(
            "VPC {vpc} not found in region {}; check --vpc and --region.",
            aws.region
        ));
    }
    Ok(cidrs)
}

/// RunInstances' own failures, which name a fix the generic sentence cannot.
fn launch_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
    instance_type: &str,
    az: &str,
    profile: Option<&str>,
) -> String {
    let msg = match e {
        SdkError::ServiceError(s) => s.err().message().unwrap_or("").trim_end_matches('.'),
        _ => "",
    };
    let az = if az.is_empty() {
        "the subnet's Availability Zone"
    } else {
        az
    };
    match code(e) {
        Some("InsufficientInstanceCapacity") => format!(
            "AWS has no {instance_type} capacity in {az} right now ({msg}); try another --instance-type."
        ),
        Some("Unsupported") | Some("InvalidParameterCombination") => format!(
            "AWS cannot launch {instance_type} there ({msg}); choose another --instance-type."
        ),
        Some("VcpuLimitExceeded") | Some("InstanceLimitExceeded") => format!(
            "Your account's instance quota in this region is reached ({msg}); stop an instance or raise the quota, or use --collector host."
        ),
        Some("InvalidAMIID.NotFound") | Some("InvalidAMIID.Malformed") => format!(
            "The collector's AMI is not available ({msg}); check the launch template's AMI."
        ),
        _ => explain("ec2:RunInstances", e, profile),
    }
}

/// Creates the security group and launches the collector in `subnet` of `vpc`.
#[allow(clippy::too_many_arguments)]
pub async fn launch(
    aws: &Aws,
    req: &LaunchRequest,
    vpc: &str,
    subnet: &str,
    az: &str,
    ledger: &mut Ledger,
    stop: &AtomicBool,
    status: &dyn Fn(&str),
) -> Result<Launched, String> {
    let p = aws.profile.as_deref();
    let run_id = ledger.run_id.clone();
    let created_by = ledger.created_by.clone();

    status("Preparing the collector instance");
    let tpl = match &req.launch_template {
        Some(t) => Some(template(aws, t).await?),
        None => None,
    };
    if req.needs_instance_profile
        && req.instance_profile.is_none()
        && !tpl.as_ref().is_some_and(|t| t.instance_profile)
    {
        return Err("--connect ssm with a collector launched for the capture needs an instance profile for its SSM agent; set --instance-profile to one whose role has AmazonSSMManagedInstanceCore, or a --launch-template that has one (packaging/collector-launch-template.yaml makes both), or use --connect ssh.".into());
    }
    let instance_type = req
        .instance_type
        .clone()
        .or_else(|| tpl.as_ref().and_then(|t| t.instance_type.clone()))
        .unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.to_string());
    let image = match tpl.as_ref().and_then(|t| t.image.clone()) {
        Some(i) => i,
        None => al2023_image(aws, architecture(&instance_type)).await?,
    };
    let cidrs = vpc_cidrs(aws, vpc).await?;
    check_stop(stop)?;
    // The last check before anything is created: the only one that asks outside AWS.
    let ssh = match &req.ssh {
        None => None,
        Some((port, SshSource::Cidr(c))) => Some((*port, c.clone())),
        Some((port, SshSource::ThisMachine)) => {
            status("Finding this machine's public address");
            Some((*port, crate::aws::checkip::caller_public_address()?))
        }
    };
    check_stop(stop)?;

    status("Creating the collector's security group");
    let token = tags::client_token(&run_id, "sg");
    let request = aws
        .ec2
        .create_security_group()
        .group_name(format!("awsvpc-{run_id}"))
        .description(format!(
            "awsvpc collector of capture {run_id}: VXLAN from the VPC{}",
            if ssh.is_some() {
                ", SSH from the capturing machine"
            } else {
                ""
            }
        ))
        .vpc_id(vpc)
        .tag_specifications(tag_spec(ResourceType::SecurityGroup, &run_id, &created_by))
        .send();
    let group = create(
        ledger,
        Kind::SecurityGroup,
        &token,
        None,
        request,
        |r| r.group_id(),
        |e| explain("ec2:CreateSecurityGroup", e, p),
    )
    .await?;
    hold_point("security-group", stop).await;
    let vxlan = IpPermission::builder()
        .ip_protocol("udp")
        .from_port(i32::from(req.listen_port))
        .to_port(i32::from(req.listen_port))
        .set_ip_ranges(Some(
            cidrs
                .iter()
                .map(|c| {
                    IpRange::builder()
                        .cidr_ip(c)
                        .description("awsvpc: mirrored VXLAN from the VPC")
                        .build()
                })
                .collect(),
        ))
        .build();
    let mut ingress = aws
        .ec2
        .authorize_security_group_ingress()
        .group_id(&group)
        .ip_permissions(vxlan);
    if let Some((port, from)) = &ssh {
        ingress = ingress.ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(i32::from(*port))
                .to_port(i32::from(*port))
                .ip_ranges(
                    IpRange::builder()
                        .cidr_ip(from)
                        .description("awsvpc: SSH from the capturing machine")
                        .build(),
                )
                .build(),
        );
    }
    ingress
        .send()
        .await
        .map_err(|e| explain("ec2:AuthorizeSecurityGroupIngress", &e, p))?;
    crate::log_msg!(
        "security group {group}: UDP {} from {}{}",
        req.listen_port,
        cidrs.join(", "),
        ssh.as_ref()
            .map(|(port, from)| format!("; TCP {port} from {from}"))
            .unwrap_or_default()
    );
    check_stop(stop)?;

    status(&format!("Launching the collector ({instance_type})"));
    let token = tags::client_token(&run_id, "instance");
    let mut run = aws
        .ec2
        .run_instances()
        .min_count(1)
        .max_count(1)
        .image_id(&image)
        .instance_type(InstanceType::from(instance_type.as_str()))
        .user_data(crate::transport::ssm::collector::base64(
            req.user_data.as_bytes(),
        ))
        .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
        .network_interfaces(
            InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id(subnet)
                .groups(&group)
                .associate_public_ip_address(req.public_ip)
                .delete_on_termination(true)
                .build(),
        )
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .build(),
        )
        .tag_specifications(tag_spec(ResourceType::Instance, &run_id, &created_by))
        .tag_specifications(tag_spec(ResourceType::Volume, &run_id, &created_by))
        .tag_specifications(tag_spec(
            ResourceType::NetworkInterface,
            &run_id,
            &created_by,
        ))
        .client_token(&token);
    if let Some(p) = &req.instance_profile {
        let spec = IamInstanceProfileSpecification::builder();
        run = run.iam_instance_profile(if p.starts_with("arn:") {
            spec.arn(p).build()
        } else {
            spec.name(p).build()
        });
    }
    if let Some(t) = &tpl {
        run = run.launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(&t.id)
                .version("$Default")
                .build(),
        );
    }
    let instance_id = create(
        ledger,
        Kind::Instance,
        &token,
        None,
        run.send(),
        |r| r.instances().first().and_then(|i| i.instance_id()),
        |e| launch_error(e, &instance_type, az, p),
    )
    .await?;
    log_msg!("collector instance {instance_id} ({instance_type}, {image}) in {subnet}");
    hold_point("instance", stop).await;
    // The primary ENI is known while the instance is pending: the mirror is built while it
    // boots.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (eni, private_ip) = loop {
        check_stop(stop)?;
        if let (Some(eni), ip, _, _) = describe(aws, &instance_id).await? {
            break (eni, ip);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "The collector {instance_id} has no network interface a minute after launch; check it in the EC2 console."
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    Ok(Launched {
        instance_id,
        eni,
        private_ip,
        instance_type,
        security_group: group,
    })
}

/// The instance's primary ENI, private and public IPv4 and state; all `None` while EC2 does
/// not list it yet (it is eventually consistent just after RunInstances).
async fn describe(
    aws: &Aws,
    id: &str,
) -> Result<
    (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<(InstanceStateName, String)>,
    ),
    String,
> {
    let r = match aws.ec2.describe_instances().instance_ids(id).send().await {
        Ok(r) => r,
        Err(e) if code(&e) == Some("InvalidInstanceID.NotFound") => {
            return Ok((None, None, None, None))
        }
        Err(e) => return Err(explain("ec2:DescribeInstances", &e, aws.profile.as_deref())),
    };
    let Some(i) = r
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(id))
    else {
        return Ok((None, None, None, None));
    };
    let primary = i
        .network_interfaces()
        .iter()
        .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0));
    let state = i.state().and_then(|s| s.name()).cloned().map(|s| {
        let why = i
            .state_reason()
            .and_then(|r| r.message())
            .unwrap_or("")
            .to_string();
        (s, why)
    });
    Ok((
        primary
            .and_then(|n| n.network_interface_id())
            .map(str::to_string),
        primary
            .and_then(|n| n.private_ip_address())
            .or(i.private_ip_address())
            .map(str::to_string),
        i.public_ip_address().map(str::to_string),
        state,
    ))
}

/// A running instance's private and public IPv4 addresses.
pub type Addresses = (Option<String>, Option<String>);

/// Waits (bounded) until the instance runs; its addresses. `Ok(None)`: `stop` was set
/// meanwhile.
pub async fn wait_running(
    aws: &Aws,
    id: &str,
    limit: Duration,
    stop: &AtomicBool,
    status: &dyn Fn(&str),
) -> Result<Option<Addresses>, String> {
    let started = Instant::now();
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let (_, private, public, state) = describe(aws, id).await?;
        match state {
            Some((InstanceStateName::Running, _)) => return Ok(Some((private, public))),
            Some((s @ (InstanceStateName::ShuttingDown | InstanceStateName::Terminated), why)) => {
                return Err(format!(
                    "The collector {id} stopped while starting ({}{}); check its launch template and the account's EC2 limits.",
                    s.as_str(),
                    if why.is_empty() { String::new() } else { format!(": {why}") }
                ))
            }
            _ => {}
        }
        if started.elapsed() > limit {
            return Err(format!(
                "The collector {id} did not reach running within {} s; check it in the EC2 console.",
                limit.as_secs()
            ));
        }
        status(&format!(
            "Starting the collector {id} ({} s)",
            started.elapsed().as_secs()
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_from_the_type_name() {
        for t in [
            "t4g.nano",
            "c7gn.large",
            "im4gn.xlarge",
            "x2gd.medium",
            "a1.large",
            "m6g.large",
            "g5g.xlarge",
        ] {
            assert_eq!(architecture(t), "arm64", "{t}");
        }
        for t in [
            "t3.nano",
            "t3a.micro",
            "g4dn.xlarge",
            "m5.large",
            "c6i.large",
            "inf2.xlarge",
            "p5.48xlarge",
        ] {
            assert_eq!(architecture(t), "x86_64", "{t}");
        }
    }

    #[test]
    fn the_default_has_a_price_and_an_ami_parameter() {
        assert!(hourly_usd(DEFAULT_INSTANCE_TYPE).is_some());
        assert_eq!(
            al2023_parameter(architecture(DEFAULT_INSTANCE_TYPE)),
            "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
        );
    }
}
