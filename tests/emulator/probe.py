#!/usr/bin/env python3
"""Probe an AWS EC2/STS/SSM emulator on loopback for the operations awsvpc uses.

Usage:
    probe.py --endpoint http://127.0.0.1:5555 [--label winterbaume]
    probe.py --spawn 'winterbaume-server --host 127.0.0.1 --port 5555' \
             --endpoint http://127.0.0.1:5555

With --spawn the server is started by this script, the time from spawn until
the first successful STS GetCallerIdentity is measured, and the server is
stopped (by its pid) afterwards.

Safety: the endpoint must be a loopback address; boto3 only talks to the
endpoint, credentials are fake and static, IMDS lookups are disabled.
Nothing returned by the emulator (IPs, URLs) is ever contacted.
"""
import argparse
import ipaddress
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(var, None)
os.environ["AWS_CONFIG_FILE"] = "/dev/null"
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"

import boto3  # noqa: E402
import botocore.config  # noqa: E402
import botocore.exceptions  # noqa: E402

REGION = "us-east-1"
RUN_ID = "probe-run-1"
TAGS = [
    {"Key": "awsvpc:managed", "Value": "true"},
    {"Key": "awsvpc:run-id", "Value": RUN_ID},
]

OUT = sys.stdout


def emit(line=""):
    OUT.write(line + "\n")
    OUT.flush()


def short(obj, limit=900):
    s = json.dumps(obj, default=str, sort_keys=True)
    return s if len(s) <= limit else s[:limit] + "...<truncated>"


def call(label, fn, summarize=None, **kwargs):
    """Run one API call; print OK + summary, or the error code/HTTP status."""
    try:
        resp = fn(**kwargs)
    except botocore.exceptions.ClientError as e:
        err = e.response.get("Error", {})
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        emit(f"[ERR ] {label}: code={err.get('Code')!r} http={status} msg={err.get('Message')!r}")
        return None
    except botocore.exceptions.BotoCoreError as e:
        emit(f"[EXC ] {label}: {type(e).__name__}: {str(e)[:300]}")
        return None
    except Exception as e:  # noqa: BLE001
        emit(f"[EXC ] {label}: {type(e).__name__}: {str(e)[:300]}")
        return None
    resp = dict(resp)
    status = resp.pop("ResponseMetadata", {}).get("HTTPStatusCode")
    summary = summarize(resp) if summarize else resp
    emit(f"[OK  ] {label}: http={status} {short(summary)}")
    return resp


def check_loopback(url):
    host = urllib.parse.urlparse(url).hostname
    try:
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    except Exception as e:  # noqa: BLE001
        sys.exit(f"cannot resolve endpoint host {host!r}: {e}")
    if not ip.is_loopback:
        sys.exit(f"refusing non-loopback endpoint {url}")


def clients(endpoint):
    cfg = botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30)
    kw = dict(
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="AKIDFAKEFAKEFAKE",
        aws_secret_access_key="fakesecret",
        config=cfg,
    )
    return boto3.client("sts", **kw), boto3.client("ec2", **kw), boto3.client("ssm", **kw)


def wait_ready(endpoint, proc, timeout=120):
    sts, _, _ = clients(endpoint)
    host = urllib.parse.urlparse(endpoint).hostname
    port = urllib.parse.urlparse(endpoint).port
    t0 = time.monotonic()
    t_tcp = None
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"server exited early with rc={proc.returncode}")
        if t_tcp is None:
            try:
                socket.create_connection((host, port), timeout=0.2).close()
                t_tcp = time.monotonic() - t0
            except OSError:
                time.sleep(0.01)
                continue
        try:
            sts.get_caller_identity()
            return t_tcp, time.monotonic() - t0
        except Exception:  # noqa: BLE001
            time.sleep(0.01)
    sys.exit("server did not become ready")


def eni_summary(i):
    return [
        {
            "Id": n.get("NetworkInterfaceId"),
            "PrivateIp": n.get("PrivateIpAddress"),
            "Mac": n.get("MacAddress"),
            "SubnetId": n.get("SubnetId"),
            "VpcId": n.get("VpcId"),
            "Groups": [g.get("GroupId") for g in n.get("Groups", [])],
            "DeviceIndex": n.get("Attachment", {}).get("DeviceIndex"),
        }
        for n in i.get("NetworkInterfaces", [])
    ]


def probe(endpoint):
    sts, ec2, ssm = clients(endpoint)

    emit("== STS")
    call("sts.get_caller_identity", sts.get_caller_identity)

    emit("== EC2 basics")
    call("describe_regions", ec2.describe_regions,
         lambda r: {"count": len(r.get("Regions", [])),
                    "first": [x["RegionName"] for x in r.get("Regions", [])][:4]})
    call("describe_vpcs (all)", ec2.describe_vpcs,
         lambda r: [{"VpcId": v["VpcId"], "Cidr": v.get("CidrBlock"), "IsDefault": v.get("IsDefault")}
                    for v in r.get("Vpcs", [])])
    call("describe_subnets (all)", ec2.describe_subnets,
         lambda r: {"count": len(r.get("Subnets", [])),
                    "sample": [{"SubnetId": s["SubnetId"], "VpcId": s.get("VpcId"),
                                "AZ": s.get("AvailabilityZone"), "Cidr": s.get("CidrBlock"),
                                "DefaultForAz": s.get("DefaultForAz")}
                               for s in r.get("Subnets", [])][:3]})
    call("describe_vpcs Filters isDefault=true", ec2.describe_vpcs,
         lambda r: [v["VpcId"] for v in r.get("Vpcs", [])],
         Filters=[{"Name": "isDefault", "Values": ["true"]}])

    r = call("create_vpc 10.77.0.0/16", ec2.create_vpc,
             lambda r: {"VpcId": r["Vpc"]["VpcId"]}, CidrBlock="10.77.0.0/16",
             TagSpecifications=[{"ResourceType": "vpc", "Tags": TAGS}])
    vpc_id = r["Vpc"]["VpcId"] if r else None
    r = call("create_subnet AZ=us-east-1a", ec2.create_subnet,
             lambda r: {k: r["Subnet"].get(k) for k in ("SubnetId", "AvailabilityZone", "CidrBlock", "VpcId")},
             VpcId=vpc_id, CidrBlock="10.77.1.0/24", AvailabilityZone="us-east-1a")
    subnet_id = r["Subnet"]["SubnetId"] if r else None
    call("describe_subnets Filters vpc-id", ec2.describe_subnets,
         lambda r: [s["SubnetId"] for s in r.get("Subnets", [])],
         Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    r = call("create_security_group", ec2.create_security_group,
             lambda r: r, GroupName="awsvpc-probe-sg", Description="probe", VpcId=vpc_id,
             TagSpecifications=[{"ResourceType": "security-group", "Tags": TAGS}])
    sg_id = r["GroupId"] if r else None
    call("authorize_security_group_ingress udp/4789", ec2.authorize_security_group_ingress,
         lambda r: {"Return": r.get("Return"), "n": len(r.get("SecurityGroupRules", []))},
         GroupId=sg_id,
         IpPermissions=[{"IpProtocol": "udp", "FromPort": 4789, "ToPort": 4789,
                         "IpRanges": [{"CidrIp": "10.77.0.0/16"}]}])

    emit("== Instances")
    inst = {}
    for role in ("target", "source"):
        r = call(f"run_instances ({role})", ec2.run_instances,
                 lambda r: [{"InstanceId": i["InstanceId"], "State": i.get("State", {}).get("Name"),
                             "PrivateIp": i.get("PrivateIpAddress"), "SubnetId": i.get("SubnetId"),
                             "ENIs": eni_summary(i)} for i in r.get("Instances", [])],
                 ImageId="ami-0123456789abcdef0", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                 SubnetId=subnet_id, SecurityGroupIds=[sg_id] if sg_id else [],
                 TagSpecifications=[{"ResourceType": "instance",
                                     "Tags": TAGS + [{"Key": "awsvpc:role", "Value": role}]},
                                    {"ResourceType": "network-interface", "Tags": TAGS}])
        if r and r.get("Instances"):
            i = r["Instances"][0]
            inst[role] = {"id": i["InstanceId"],
                          "eni": (i.get("NetworkInterfaces") or [{}])[0].get("NetworkInterfaceId")}
    emit(f"   instances: {short(inst)}")
    for role, v in inst.items():
        if v.get("eni"):
            continue
        emit(f"   {role} instance has no ENI -> fallback: create_network_interface + attach")
        r = call(f"create_network_interface ({role})", ec2.create_network_interface,
                 lambda r: {k: r["NetworkInterface"].get(k) for k in
                            ("NetworkInterfaceId", "PrivateIpAddress", "MacAddress", "SubnetId", "VpcId")},
                 SubnetId=subnet_id, Groups=[sg_id] if sg_id else [], Description=f"probe {role}",
                 TagSpecifications=[{"ResourceType": "network-interface", "Tags": TAGS}])
        if r:
            v["eni"] = r["NetworkInterface"]["NetworkInterfaceId"]
            call(f"attach_network_interface ({role}, DeviceIndex=1)", ec2.attach_network_interface, lambda r: r,
                 NetworkInterfaceId=v["eni"], InstanceId=v["id"], DeviceIndex=1)
    if any(v.get("eni") for v in inst.values()):
        call("describe_instances (ENIs after fallback attach)", ec2.describe_instances,
             lambda r: [(i["InstanceId"], [n.get("NetworkInterfaceId") for n in i.get("NetworkInterfaces", [])])
                        for res in r.get("Reservations", []) for i in res.get("Instances", [])],
             InstanceIds=[v["id"] for v in inst.values()])
    tgt_eni = inst.get("target", {}).get("eni")
    src_eni = inst.get("source", {}).get("eni")

    di = lambda r: [(i["InstanceId"], i.get("State", {}).get("Name"))  # noqa: E731
                    for res in r.get("Reservations", []) for i in res.get("Instances", [])]
    nis = lambda r: [{"Id": n["NetworkInterfaceId"], "Mac": n.get("MacAddress"),  # noqa: E731
                      "Ip": n.get("PrivateIpAddress"), "Vpc": n.get("VpcId"),
                      "Inst": n.get("Attachment", {}).get("InstanceId"),
                      "TagKeys": sorted(t["Key"] for t in n.get("TagSet", []))}
                     for n in r.get("NetworkInterfaces", [])]
    call("describe_network_interfaces (no filter)", ec2.describe_network_interfaces, nis)
    call("describe_network_interfaces Filters vpc-id=<probe vpc>", ec2.describe_network_interfaces, nis,
         Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    call("describe_network_interfaces Filters network-interface-id=<source eni>",
         ec2.describe_network_interfaces, nis,
         Filters=[{"Name": "network-interface-id", "Values": [src_eni]}])
    call("describe_network_interfaces Filters network-interface-id=eni-0000000000000dead (no match)",
         ec2.describe_network_interfaces, nis,
         Filters=[{"Name": "network-interface-id", "Values": ["eni-0000000000000dead"]}])
    call("describe_network_interfaces Filters attachment.instance-id=<source>",
         ec2.describe_network_interfaces, nis,
         Filters=[{"Name": "attachment.instance-id", "Values": [inst.get("source", {}).get("id")]}])
    src_mac = None
    r = call("describe_network_interfaces NetworkInterfaceIds=[<source eni>]", ec2.describe_network_interfaces, nis,
             NetworkInterfaceIds=[src_eni] if src_eni else ["eni-x"])
    if r and r.get("NetworkInterfaces"):
        src_mac = r["NetworkInterfaces"][0].get("MacAddress")
    call(f"describe_network_interfaces Filters mac-address={src_mac}", ec2.describe_network_interfaces, nis,
         Filters=[{"Name": "mac-address", "Values": [src_mac or "02:00:00:00:00:00"]}])
    call("describe_security_groups Filters tag-key=awsvpc:managed", ec2.describe_security_groups,
         lambda r: [g["GroupId"] for g in r.get("SecurityGroups", [])],
         Filters=[{"Name": "tag-key", "Values": ["awsvpc:managed"]}])
    call("describe_security_groups Filters tag-key=nomatch", ec2.describe_security_groups,
         lambda r: [g["GroupId"] for g in r.get("SecurityGroups", [])],
         Filters=[{"Name": "tag-key", "Values": ["nomatch"]}])
    call("describe_instances Filters tag-key=nomatch", ec2.describe_instances, di,
         Filters=[{"Name": "tag-key", "Values": ["nomatch"]}])
    call("describe_network_interfaces NetworkInterfaceIds=[eni-0000000000000dead]",
         ec2.describe_network_interfaces, nis, NetworkInterfaceIds=["eni-0000000000000dead"])

    call("describe_instances Filters tag:awsvpc:run-id=<run>", ec2.describe_instances, di,
         Filters=[{"Name": "tag:awsvpc:run-id", "Values": [RUN_ID]}])
    call("describe_instances Filters tag:awsvpc:run-id=nomatch", ec2.describe_instances, di,
         Filters=[{"Name": "tag:awsvpc:run-id", "Values": ["nomatch"]}])
    call("describe_instances Filters tag-key=awsvpc:managed", ec2.describe_instances, di,
         Filters=[{"Name": "tag-key", "Values": ["awsvpc:managed"]}])
    call("describe_instances Filters tag:awsvpc:role=source + instance-state-name=running",
         ec2.describe_instances, di,
         Filters=[{"Name": "tag:awsvpc:role", "Values": ["source"]},
                  {"Name": "instance-state-name", "Values": ["running", "pending"]}])
    call("describe_instances Filters network-interface.network-interface-id=<source eni>",
         ec2.describe_instances, di,
         Filters=[{"Name": "network-interface.network-interface-id", "Values": [src_eni]}])
    call("describe_instances InstanceIds=[i-0000000000000dead]", ec2.describe_instances, di,
         InstanceIds=["i-0000000000000dead"])

    call("describe_instance_types t3.micro,c6i.large,m5.large", ec2.describe_instance_types,
         lambda r: [{k: t.get(k) for k in ("InstanceType", "Hypervisor", "BareMetal",
                                            "CurrentGeneration")}
                    | {"Arch": t.get("ProcessorInfo", {}).get("SupportedArchitectures"),
                       "MaxENI": t.get("NetworkInfo", {}).get("MaximumNetworkInterfaces"),
                       "ENA": t.get("NetworkInfo", {}).get("EnaSupport"),
                       "Nitro": t.get("NitroEnclavesSupport")}
                    for t in r.get("InstanceTypes", [])],
         InstanceTypes=["t3.micro", "c6i.large", "m5.large"])
    call("describe_instance_types c5.metal", ec2.describe_instance_types,
         lambda r: [{k: t.get(k) for k in ("InstanceType", "Hypervisor", "BareMetal")}
                    for t in r.get("InstanceTypes", [])], InstanceTypes=["c5.metal"])

    lts = lambda r: [(t["LaunchTemplateId"], t.get("LaunchTemplateName"))  # noqa: E731
                     for t in r.get("LaunchTemplates", [])]
    call("describe_launch_templates (none yet)", ec2.describe_launch_templates, lts)
    r = call("create_launch_template", ec2.create_launch_template,
             lambda r: {"Id": r["LaunchTemplate"]["LaunchTemplateId"],
                        "Ver": r["LaunchTemplate"].get("LatestVersionNumber")},
             LaunchTemplateName="awsvpc-probe-lt",
             LaunchTemplateData={
                 "ImageId": "ami-0123456789abcdef0", "InstanceType": "t3.micro",
                 "UserData": "IyEvYmluL3NoCmVjaG8gaGkK",
                 "NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": subnet_id,
                                        "Groups": [sg_id] if sg_id else []}],
                 "TagSpecifications": [{"ResourceType": "instance", "Tags": TAGS}]},
             TagSpecifications=[{"ResourceType": "launch-template", "Tags": TAGS}])
    call("describe_launch_templates Filters tag:awsvpc:run-id", ec2.describe_launch_templates, lts,
         Filters=[{"Name": "tag:awsvpc:run-id", "Values": [RUN_ID]}])
    call("describe_launch_templates LaunchTemplateNames=[nonexistent]", ec2.describe_launch_templates, lts,
         LaunchTemplateNames=["does-not-exist"])

    emit("== Traffic mirroring")
    fsum = lambda r: {"Id": r["TrafficMirrorFilter"]["TrafficMirrorFilterId"],  # noqa: E731
                      "ClientToken": r.get("ClientToken"),
                      "Tags": r["TrafficMirrorFilter"].get("Tags")}
    r = call("create_traffic_mirror_filter (ClientToken=tok-filter-1, tags)",
             ec2.create_traffic_mirror_filter, fsum, Description="awsvpc probe",
             ClientToken="tok-filter-1",
             TagSpecifications=[{"ResourceType": "traffic-mirror-filter", "Tags": TAGS}])
    filt = r["TrafficMirrorFilter"]["TrafficMirrorFilterId"] if r else None
    r2 = call("create_traffic_mirror_filter (same ClientToken again)",
              ec2.create_traffic_mirror_filter, fsum, Description="awsvpc probe",
              ClientToken="tok-filter-1",
              TagSpecifications=[{"ResourceType": "traffic-mirror-filter", "Tags": TAGS}])
    if r and r2:
        same = r2["TrafficMirrorFilter"]["TrafficMirrorFilterId"] == filt
        emit(f"   ClientToken idempotent (same id returned): {same}")
        if not same:
            call("delete duplicate filter", ec2.delete_traffic_mirror_filter, None,
                 TrafficMirrorFilterId=r2["TrafficMirrorFilter"]["TrafficMirrorFilterId"])

    rules = []
    for n, (direction, dst, src) in enumerate([
            ("ingress", "0.0.0.0/0", "0.0.0.0/0"), ("egress", "0.0.0.0/0", "0.0.0.0/0"),
            ("ingress", "::/0", "::/0"), ("egress", "::/0", "::/0")]):
        r = call(f"create_traffic_mirror_filter_rule {direction} {dst}",
                 ec2.create_traffic_mirror_filter_rule,
                 lambda r: {k: r["TrafficMirrorFilterRule"].get(k) for k in
                            ("TrafficMirrorFilterRuleId", "TrafficDirection", "RuleNumber",
                             "DestinationCidrBlock", "Protocol")},
                 TrafficMirrorFilterId=filt, TrafficDirection=direction, RuleNumber=100 + n,
                 RuleAction="accept", DestinationCidrBlock=dst, SourceCidrBlock=src,
                 ClientToken=f"tok-rule-{n}")
        if r:
            rules.append(r["TrafficMirrorFilterRule"]["TrafficMirrorFilterRuleId"])
    call("create_traffic_mirror_filter_rule protocol=6 ports 80-443", ec2.create_traffic_mirror_filter_rule,
         lambda r: {k: r["TrafficMirrorFilterRule"].get(k) for k in
                    ("TrafficMirrorFilterRuleId", "Protocol", "DestinationPortRange")},
         TrafficMirrorFilterId=filt, TrafficDirection="ingress", RuleNumber=200, RuleAction="reject",
         Protocol=6, DestinationPortRange={"FromPort": 80, "ToPort": 443},
         DestinationCidrBlock="10.0.0.0/8", SourceCidrBlock="0.0.0.0/0")
    call("create_traffic_mirror_filter_rule on nonexistent filter", ec2.create_traffic_mirror_filter_rule,
         None, TrafficMirrorFilterId="tmf-0000000000000dead", TrafficDirection="ingress", RuleNumber=1,
         RuleAction="accept", DestinationCidrBlock="0.0.0.0/0", SourceCidrBlock="0.0.0.0/0")
    call("modify_traffic_mirror_filter_network_services add amazon-dns",
         ec2.modify_traffic_mirror_filter_network_services,
         lambda r: {"NetworkServices": r["TrafficMirrorFilter"].get("NetworkServices")},
         TrafficMirrorFilterId=filt, AddNetworkServices=["amazon-dns"])
    dfs = lambda r: [{"Id": f["TrafficMirrorFilterId"],  # noqa: E731
                      "nIngress": len(f.get("IngressFilterRules", [])),
                      "nEgress": len(f.get("EgressFilterRules", [])),
                      "NetworkServices": f.get("NetworkServices"),
                      "Tags": f.get("Tags")} for f in r.get("TrafficMirrorFilters", [])]
    call("describe_traffic_mirror_filters (all)", ec2.describe_traffic_mirror_filters, dfs)
    call("describe_traffic_mirror_filters Filters tag:awsvpc:run-id=nomatch",
         ec2.describe_traffic_mirror_filters, dfs,
         Filters=[{"Name": "tag:awsvpc:run-id", "Values": ["nomatch"]}])
    call("describe_traffic_mirror_filters Filters traffic-mirror-filter-id=tmf-0000000000000dead",
         ec2.describe_traffic_mirror_filters, dfs,
         Filters=[{"Name": "traffic-mirror-filter-id", "Values": ["tmf-0000000000000dead"]}])
    call("describe_traffic_mirror_filters TrafficMirrorFilterIds=[tmf-0000000000000dead]",
         ec2.describe_traffic_mirror_filters, dfs, TrafficMirrorFilterIds=["tmf-0000000000000dead"])
    call("describe_traffic_mirror_filter_rules TrafficMirrorFilterId=<filter>",
         getattr(ec2, "describe_traffic_mirror_filter_rules", None) or (lambda **k: {"n/a": True}),
         lambda r: [(x["TrafficMirrorFilterRuleId"], x["TrafficDirection"], x["DestinationCidrBlock"])
                    for x in r.get("TrafficMirrorFilterRules", [])],
         TrafficMirrorFilterId=filt)

    tsum = lambda r: {k: r["TrafficMirrorTarget"].get(k) for k in  # noqa: E731
                      ("TrafficMirrorTargetId", "NetworkInterfaceId", "Type", "Tags")} | {
        "ClientToken": r.get("ClientToken")}
    r = call("create_traffic_mirror_target (target ENI, ClientToken=tok-target-1)",
             ec2.create_traffic_mirror_target, tsum, NetworkInterfaceId=tgt_eni,
             Description="awsvpc probe target", ClientToken="tok-target-1",
             TagSpecifications=[{"ResourceType": "traffic-mirror-target", "Tags": TAGS}])
    target = r["TrafficMirrorTarget"]["TrafficMirrorTargetId"] if r else None
    r2 = call("create_traffic_mirror_target (same ClientToken again)", ec2.create_traffic_mirror_target,
              tsum, NetworkInterfaceId=tgt_eni, Description="awsvpc probe target",
              ClientToken="tok-target-1",
              TagSpecifications=[{"ResourceType": "traffic-mirror-target", "Tags": TAGS}])
    if r and r2:
        same = r2["TrafficMirrorTarget"]["TrafficMirrorTargetId"] == target
        emit(f"   ClientToken idempotent (same id returned): {same}")
        if not same:
            call("delete duplicate target", ec2.delete_traffic_mirror_target, None,
                 TrafficMirrorTargetId=r2["TrafficMirrorTarget"]["TrafficMirrorTargetId"])
    call("create_traffic_mirror_target NetworkInterfaceId=eni-0000000000000dead",
         ec2.create_traffic_mirror_target, tsum, NetworkInterfaceId="eni-0000000000000dead")

    ssum = lambda r: {k: r["TrafficMirrorSession"].get(k) for k in  # noqa: E731
                      ("TrafficMirrorSessionId", "NetworkInterfaceId", "SessionNumber",
                       "VirtualNetworkId", "PacketLength", "Tags")} | {"ClientToken": r.get("ClientToken")}
    sessions = []

    def mk_session(label, eni, num, token=None, t=None, f=None):
        kw = dict(NetworkInterfaceId=eni, TrafficMirrorTargetId=t or target,
                  TrafficMirrorFilterId=f or filt, SessionNumber=num, VirtualNetworkId=4242 + num,
                  PacketLength=128, Description="awsvpc probe session",
                  TagSpecifications=[{"ResourceType": "traffic-mirror-session", "Tags": TAGS}])
        if token:
            kw["ClientToken"] = token
        return call(label, ec2.create_traffic_mirror_session, ssum, **kw)

    r = mk_session("create_traffic_mirror_session #1 (source ENI, ClientToken=tok-sess-1)", src_eni, 1,
                   token="tok-sess-1")
    if r:
        sessions.append(r["TrafficMirrorSession"]["TrafficMirrorSessionId"])
    r2 = mk_session("create_traffic_mirror_session #1 again (same ClientToken)", src_eni, 1,
                    token="tok-sess-1")
    if r and r2:
        same = r2["TrafficMirrorSession"]["TrafficMirrorSessionId"] == sessions[0]
        emit(f"   ClientToken idempotent (same id returned): {same}")
        if not same:
            sessions.append(r2["TrafficMirrorSession"]["TrafficMirrorSessionId"])
    try:
        ec2.create_traffic_mirror_session(
            DryRun=True, NetworkInterfaceId=src_eni, TrafficMirrorTargetId=target,
            TrafficMirrorFilterId=filt, SessionNumber=9)
        emit("[OK  ] create_traffic_mirror_session DryRun=True: succeeded (DryRun ignored!)")
        # clean up whatever the ignored DryRun created
        for s in ec2.describe_traffic_mirror_sessions().get("TrafficMirrorSessions", []):
            if s.get("SessionNumber") == 9 and s["TrafficMirrorSessionId"] not in sessions:
                sessions.append(s["TrafficMirrorSessionId"])
    except botocore.exceptions.ClientError as e:
        emit(f"[ERR ] create_traffic_mirror_session DryRun=True: code={e.response['Error'].get('Code')!r} "
             f"http={e.response['ResponseMetadata'].get('HTTPStatusCode')}")
    except Exception as e:  # noqa: BLE001
        emit(f"[EXC ] create_traffic_mirror_session DryRun=True: {type(e).__name__}: {str(e)[:200]}")

    dss = lambda r: [{"Id": s["TrafficMirrorSessionId"], "Eni": s.get("NetworkInterfaceId"),  # noqa: E731
                      "Num": s.get("SessionNumber"), "Tags": s.get("Tags")}
                     for s in r.get("TrafficMirrorSessions", [])]
    call("describe_traffic_mirror_sessions (all)", ec2.describe_traffic_mirror_sessions, dss)
    call("describe_traffic_mirror_sessions Filters network-interface-id=<source eni>",
         ec2.describe_traffic_mirror_sessions, dss,
         Filters=[{"Name": "network-interface-id", "Values": [src_eni]}])
    call("describe_traffic_mirror_sessions Filters network-interface-id=eni-0000000000000dead",
         ec2.describe_traffic_mirror_sessions, dss,
         Filters=[{"Name": "network-interface-id", "Values": ["eni-0000000000000dead"]}])
    call("describe_traffic_mirror_sessions Filters tag:awsvpc:run-id=<run>",
         ec2.describe_traffic_mirror_sessions, dss,
         Filters=[{"Name": "tag:awsvpc:run-id", "Values": [RUN_ID]}])
    call("describe_traffic_mirror_sessions Filters tag:awsvpc:run-id=nomatch",
         ec2.describe_traffic_mirror_sessions, dss,
         Filters=[{"Name": "tag:awsvpc:run-id", "Values": ["nomatch"]}])
    call("describe_traffic_mirror_sessions Filters tag-key=nomatch",
         ec2.describe_traffic_mirror_sessions, dss,
         Filters=[{"Name": "tag-key", "Values": ["nomatch"]}])
    call("describe_traffic_mirror_sessions TrafficMirrorSessionIds=[tms-0000000000000dead]",
         ec2.describe_traffic_mirror_sessions, dss, TrafficMirrorSessionIds=["tms-0000000000000dead"])
    dts = lambda r: [{"Id": t["TrafficMirrorTargetId"], "Eni": t.get("NetworkInterfaceId"),  # noqa: E731
                      "Tags": t.get("Tags")} for t in r.get("TrafficMirrorTargets", [])]
    call("describe_traffic_mirror_targets (all)", ec2.describe_traffic_mirror_targets, dts)
    call("describe_traffic_mirror_targets Filters network-interface-id=eni-0000000000000dead",
         ec2.describe_traffic_mirror_targets, dts,
         Filters=[{"Name": "network-interface-id", "Values": ["eni-0000000000000dead"]}])
    call("describe_traffic_mirror_targets Filters tag:awsvpc:run-id=nomatch",
         ec2.describe_traffic_mirror_targets, dts,
         Filters=[{"Name": "tag:awsvpc:run-id", "Values": ["nomatch"]}])

    dtags = lambda r: [(t["ResourceType"], t["ResourceId"], t["Key"])  # noqa: E731
                       for t in r.get("Tags", [])]
    call("describe_tags Filters resource-type=traffic-mirror-session", ec2.describe_tags, dtags,
         Filters=[{"Name": "resource-type", "Values": ["traffic-mirror-session"]}])
    call("describe_tags Filters key=awsvpc:managed", ec2.describe_tags, dtags,
         Filters=[{"Name": "key", "Values": ["awsvpc:managed"]}])
    call("describe_tags Filters resource-id=<session>", ec2.describe_tags, dtags,
         Filters=[{"Name": "resource-id", "Values": sessions[:1] or ["tms-x"]}])
    call("create_tags on session", ec2.create_tags, lambda r: r,
         Resources=sessions[:1] or ["tms-x"], Tags=[{"Key": "extra", "Value": "1"}])
    call("describe_traffic_mirror_sessions after create_tags", ec2.describe_traffic_mirror_sessions, dss,
         TrafficMirrorSessionIds=sessions[:1] or ["tms-x"])

    emit("-- in-use deletes")
    call("delete_traffic_mirror_target while session exists", ec2.delete_traffic_mirror_target, lambda r: r,
         TrafficMirrorTargetId=target)
    call("delete_traffic_mirror_filter while session exists", ec2.delete_traffic_mirror_filter, lambda r: r,
         TrafficMirrorFilterId=filt)

    emit("-- per-ENI quota / validation")
    for num in (2, 3):
        r = mk_session(f"create_traffic_mirror_session #{num} (same source ENI)", src_eni, num)
        if r:
            sessions.append(r["TrafficMirrorSession"]["TrafficMirrorSessionId"])
    r = mk_session("create_traffic_mirror_session #4 on same source ENI (AWS quota is 3)", src_eni, 4)
    if r:
        sessions.append(r["TrafficMirrorSession"]["TrafficMirrorSessionId"])
    r = mk_session("create_traffic_mirror_session duplicate SessionNumber=1 on same ENI", src_eni, 1)
    if r:
        sessions.append(r["TrafficMirrorSession"]["TrafficMirrorSessionId"])
    r = mk_session("create_traffic_mirror_session NetworkInterfaceId=eni-0000000000000dead",
                   "eni-0000000000000dead", 5)
    if r:
        sessions.append(r["TrafficMirrorSession"]["TrafficMirrorSessionId"])
    r = mk_session("create_traffic_mirror_session source ENI == target ENI", tgt_eni, 1)
    if r:
        sessions.append(r["TrafficMirrorSession"]["TrafficMirrorSessionId"])
    for what, kw in (("target", {"t": "tmt-0000000000000dead"}), ("filter", {"f": "tmf-0000000000000dead"})):
        r = mk_session(f"create_traffic_mirror_session nonexistent {what}", src_eni, 6, **kw)
        if r:
            sessions.append(r["TrafficMirrorSession"]["TrafficMirrorSessionId"])

    emit("-- cleanup order")
    for s in sessions:
        call(f"delete_traffic_mirror_session {s}", ec2.delete_traffic_mirror_session, lambda r: r,
             TrafficMirrorSessionId=s)
    for rid in rules:
        call(f"delete_traffic_mirror_filter_rule {rid}", ec2.delete_traffic_mirror_filter_rule, lambda r: r,
             TrafficMirrorFilterRuleId=rid)
    call("delete_traffic_mirror_filter", ec2.delete_traffic_mirror_filter, lambda r: r,
         TrafficMirrorFilterId=filt)
    call("delete_traffic_mirror_target", ec2.delete_traffic_mirror_target, lambda r: r,
         TrafficMirrorTargetId=target)

    emit("-- NotFound codes")
    call("delete_traffic_mirror_session tms-0000000000000dead", ec2.delete_traffic_mirror_session, lambda r: r,
         TrafficMirrorSessionId="tms-0000000000000dead")
    call("delete_traffic_mirror_session <already deleted>", ec2.delete_traffic_mirror_session, lambda r: r,
         TrafficMirrorSessionId=sessions[0] if sessions else "tms-x")
    call("delete_traffic_mirror_target tmt-0000000000000dead", ec2.delete_traffic_mirror_target, lambda r: r,
         TrafficMirrorTargetId="tmt-0000000000000dead")
    call("delete_traffic_mirror_filter tmf-0000000000000dead", ec2.delete_traffic_mirror_filter, lambda r: r,
         TrafficMirrorFilterId="tmf-0000000000000dead")
    call("delete_traffic_mirror_filter_rule tmfr-0000000000000dead", ec2.delete_traffic_mirror_filter_rule,
         lambda r: r, TrafficMirrorFilterRuleId="tmfr-0000000000000dead")
    call("describe_traffic_mirror_sessions (after cleanup)", ec2.describe_traffic_mirror_sessions, dss)

    emit("== Teardown of EC2 resources")
    call("delete_security_group while instances use it", ec2.delete_security_group, lambda r: r, GroupId=sg_id)
    ids = [v["id"] for v in inst.values()]
    call("terminate_instances", ec2.terminate_instances,
         lambda r: [(i["InstanceId"], i["CurrentState"]["Name"]) for i in r.get("TerminatingInstances", [])],
         InstanceIds=ids)
    call("describe_instances after terminate", ec2.describe_instances, di, InstanceIds=ids)
    call("describe_network_interfaces after terminate (vpc-id filter)", ec2.describe_network_interfaces, nis,
         Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    call("delete_security_group after terminate", ec2.delete_security_group, lambda r: r, GroupId=sg_id)
    call("terminate_instances i-0000000000000dead", ec2.terminate_instances, lambda r: r,
         InstanceIds=["i-0000000000000dead"])

    emit("== SSM")
    call("ssm.get_parameter al2023 x86_64", ssm.get_parameter,
         lambda r: {k: r["Parameter"].get(k) for k in ("Name", "Value", "Type")},
         Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
    call("ssm.get_parameter al2023 arm64", ssm.get_parameter,
         lambda r: {k: r["Parameter"].get(k) for k in ("Name", "Value")},
         Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64")
    call("ssm.get_parameter nonexistent", ssm.get_parameter, lambda r: r, Name="/does/not/exist")
    call("ssm.describe_instance_information", ssm.describe_instance_information, lambda r: r)
    call("ssm.describe_instance_information Filters InstanceIds", ssm.describe_instance_information,
         lambda r: r, Filters=[{"Key": "InstanceIds", "Values": ids or ["i-x"]}])

    emit("== Reset endpoints (raw HTTP to the emulator only)")
    for path in ("/moto-api/reset", "/_reset", "/reset"):
        req = urllib.request.Request(endpoint.rstrip("/") + path, data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                emit(f"POST {path}: http={resp.status} body={resp.read(200)!r}")
        except urllib.error.HTTPError as e:
            emit(f"POST {path}: http={e.code} body={e.read(200)!r}")
        except Exception as e:  # noqa: BLE001
            emit(f"POST {path}: {type(e).__name__}: {e}")
    call("describe_vpcs after reset attempts (is probe VPC still there?)", ec2.describe_vpcs,
         lambda r: [v["VpcId"] for v in r.get("Vpcs", [])])


def main():
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", default="http://127.0.0.1:5555")
    ap.add_argument("--spawn", help="command to start the emulator (killed afterwards)")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", help="write results here instead of stdout")
    args = ap.parse_args()
    check_loopback(args.endpoint)
    if args.out:
        OUT = open(args.out, "w")
    emit(f"# probe {args.label} endpoint={args.endpoint} boto3={boto3.__version__}")
    proc = None
    if args.spawn:
        emit(f"# spawn: {args.spawn}")
        log_path = "/tmp/" + os.path.basename(args.out or "probe") + ".server.log"
        emit(f"# server log: {log_path}")
        log = open(log_path, "w")
        proc = subprocess.Popen(shlex.split(args.spawn), stdout=log, stderr=subprocess.STDOUT)
        try:
            t_tcp, t_ready = wait_ready(args.endpoint, proc)
        except BaseException:
            proc.terminate()
            proc.wait(timeout=10)
            raise
        emit(f"# startup: tcp-accept after {t_tcp*1000:.0f} ms, first OK GetCallerIdentity after "
             f"{t_ready*1000:.0f} ms")
    try:
        t0 = time.monotonic()
        probe(args.endpoint)
        emit(f"# probe wall time {time.monotonic() - t0:.2f} s")
    finally:
        if proc:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
