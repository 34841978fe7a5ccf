//! What winterbaume's EC2 lacks for a launched instance and AWS has, added around it:
//!
//! - a primary network interface: RunInstances creates one in the launch subnet (through
//!   winterbaume's own CreateNetworkInterface and AttachNetworkInterface, so
//!   DescribeNetworkInterfaces and traffic-mirror targets know it), and RunInstances and
//!   DescribeInstances list it in `networkInterfaceSet` with device index 0 and a MAC;
//! - user data: kept from RunInstances and answered by
//!   `DescribeInstanceAttribute Attribute=userData`, base64 as AWS returns it.
//!
//! The state lives in the router beside winterbaume's services, so `POST /_reset` drops it
//! with theirs.

use std::collections::HashMap;
use std::sync::Mutex;

use regex::Regex;
use winterbaume_core::service::{MockRequest, MockResponse, MockService};

#[derive(Debug, Clone)]
struct Eni {
    id: String,
    attachment: String,
    subnet: String,
    private_ip: String,
    mac: String,
}

#[derive(Default)]
pub struct Instances {
    enis: Mutex<HashMap<String, Eni>>,
    user_data: Mutex<HashMap<String, String>>,
    /// Launched and not terminated: their SSM agents are online.
    live: Mutex<Vec<String>>,
    /// `POST /_ssm`: what StartSession answers (the test's data-channel peer).
    session: Mutex<Option<(String, String)>>,
    /// `POST /_ssm`'s `ping`: the agents' PingStatus (default Online).
    ping: Mutex<Option<String>>,
    sessions_started: Mutex<u32>,
    /// Run Command: what was sent (id, instances, commands) and, once the test (playing the
    /// agent) says so, how it ended (`POST /_ssm/done`).
    commands: Mutex<Vec<(String, Vec<String>, Vec<String>)>>,
    done: Mutex<HashMap<String, (String, String)>>,
}

/// The form parameters of a query-protocol request (EC2), from the body or the URI.
pub fn params(uri: &str, body: &[u8]) -> HashMap<String, String> {
    let mut p: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    if let Some((_, q)) = uri.split_once('?') {
        for (k, v) in form_urlencoded::parse(q.as_bytes()).into_owned() {
            p.entry(k).or_insert(v);
        }
    }
    p
}

fn first<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Instances {
    /// DescribeInstanceAttribute for user data, which winterbaume answers empty.
    pub fn describe_user_data(&self, p: &HashMap<String, String>) -> Option<MockResponse> {
        if p.get("Attribute").map(String::as_str) != Some("userData") {
            return None;
        }
        let id = p.get("InstanceId")?;
        let data = self.user_data.lock().unwrap().get(id).cloned()?;
        Some(MockResponse::xml(
            200,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstanceAttributeResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>wb-mini-user-data</requestId><instanceId>{}</instanceId><userData><value>{}</value></userData></DescribeInstanceAttributeResponse>",
                xml_escape(id),
                xml_escape(&data)
            ),
        ))
    }

    /// After winterbaume answered RunInstances: a primary ENI for each new instance, and
    /// the user data kept.
    pub async fn launched(
        &self,
        ec2: &dyn MockService,
        req: &MockRequest,
        p: &HashMap<String, String>,
        answer: &MockResponse,
    ) {
        if answer.status != 200 {
            return;
        }
        let text = String::from_utf8_lossy(&answer.body).to_string();
        let subnet = p
            .get("SubnetId")
            .or_else(|| p.get("NetworkInterface.1.SubnetId"))
            .cloned();
        let groups: Vec<String> = p
            .iter()
            .filter(|(k, _)| {
                k.starts_with("SecurityGroupId.")
                    || k.starts_with("NetworkInterface.1.SecurityGroupId.")
            })
            .map(|(_, v)| v.clone())
            .collect();
        let ids = Regex::new(r"<instanceId>(i-[0-9a-f]+)</instanceId>").unwrap();
        for c in ids.captures_iter(&text) {
            let id = c[1].to_string();
            if let Some(ud) = p.get("UserData") {
                self.user_data
                    .lock()
                    .unwrap()
                    .insert(id.clone(), ud.clone());
            }
            self.live.lock().unwrap().push(id.clone());
            let Some(subnet) = &subnet else { continue };
            let mut form = vec![
                ("Action".to_string(), "CreateNetworkInterface".to_string()),
                ("SubnetId".to_string(), subnet.clone()),
            ];
            for (n, g) in groups.iter().enumerate() {
                form.push((format!("SecurityGroupId.{}", n + 1), g.clone()));
            }
            let created = call(ec2, req, form).await;
            let (Some(eni), Some(ip)) = (
                first(&created, "networkInterfaceId").map(str::to_string),
                first(&created, "privateIpAddress").map(str::to_string),
            ) else {
                continue;
            };
            let attached = call(
                ec2,
                req,
                vec![
                    ("Action".to_string(), "AttachNetworkInterface".to_string()),
                    ("NetworkInterfaceId".to_string(), eni.clone()),
                    ("InstanceId".to_string(), id.clone()),
                    ("DeviceIndex".to_string(), "0".to_string()),
                ],
            )
            .await;
            let n = self.enis.lock().unwrap().len() as u32 + 1;
            self.enis.lock().unwrap().insert(
                id,
                Eni {
                    id: eni,
                    attachment: first(&attached, "attachmentId")
                        .unwrap_or("eni-attach-0")
                        .to_string(),
                    subnet: subnet.clone(),
                    private_ip: ip,
                    mac: format!(
                        "02:00:00:{:02x}:{:02x}:{:02x}",
                        (n >> 16) & 0xff,
                        (n >> 8) & 0xff,
                        n & 0xff
                    ),
                },
            );
        }
    }

    /// TerminateInstances: their agents go offline.
    pub fn terminated(&self, p: &HashMap<String, String>) {
        let gone: Vec<&String> = p
            .iter()
            .filter(|(k, _)| k.starts_with("InstanceId."))
            .map(|(_, v)| v)
            .collect();
        self.live.lock().unwrap().retain(|i| !gone.contains(&i));
    }

    /// `POST /_ssm {"stream_url": …, "token": …}`: StartSession's answer from now on;
    /// `{"ping": "ConnectionLost"}`: the launched instances' agents are offline.
    pub fn set_session(&self, body: &[u8]) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if let Some(p) = v["ping"].as_str() {
            *self.ping.lock().unwrap() = Some(p.to_string());
            return Ok(());
        }
        let url = v["stream_url"].as_str().ok_or("needs stream_url")?;
        let token = v["token"].as_str().ok_or("needs token")?;
        *self.session.lock().unwrap() = Some((url.to_string(), token.to_string()));
        Ok(())
    }

    /// Session Manager for launched instances, which winterbaume's SSM does not know:
    /// their agents are online, and a session goes to the configured peer.
    pub fn ssm(&self, target: &str, body: &[u8]) -> Option<MockResponse> {
        let req: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let json = |v: serde_json::Value| {
            let mut r = MockResponse::json(200, v.to_string());
            r.headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            r
        };
        match target {
            "DescribeInstanceInformation" => {
                let live = self.live.lock().unwrap().clone();
                let ping = self
                    .ping
                    .lock()
                    .unwrap()
                    .clone()
                    .unwrap_or_else(|| "Online".to_string());
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                let list: Vec<serde_json::Value> = live
                    .iter()
                    .map(|id| {
                        serde_json::json!({"InstanceId": id, "PingStatus": ping,
                            "AgentVersion": "3.3.1611.0", "LastPingDateTime": now,
                            "PlatformType": "Linux", "ResourceType": "EC2Instance"})
                    })
                    .collect();
                Some(json(serde_json::json!({ "InstanceInformationList": list })))
            }
            "StartSession" => {
                let (url, token) = self.session.lock().unwrap().clone()?;
                let mut n = self.sessions_started.lock().unwrap();
                *n += 1;
                let id = format!("awsvpc-test-{:04}", *n);
                let target = req["Target"].as_str().unwrap_or("");
                if !self.live.lock().unwrap().iter().any(|i| i == target) {
                    let why = format!("{target} is not connected.");
                    return Some(error(400, "TargetNotConnected", &why));
                }
                // The port, for the test's agent, which cannot read the session document.
                let port = req["Parameters"]["portNumber"][0].as_str().unwrap_or("");
                let sep = if url.contains('?') { '&' } else { '?' };
                let url = format!("{url}{sep}port={port}");
                Some(json(
                    serde_json::json!({"SessionId": id, "TokenValue": token, "StreamUrl": url}),
                ))
            }
            "TerminateSession" => Some(json(serde_json::json!({"SessionId": req["SessionId"]}))),
            "SendCommand" => {
                let mut all = self.commands.lock().unwrap();
                let id = format!("{:08x}-0000-4000-8000-000000000000", all.len() + 1);
                let strings = |v: &serde_json::Value| -> Vec<String> {
                    v.as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let instances = strings(&req["InstanceIds"]);
                let commands = strings(&req["Parameters"]["commands"]);
                all.push((id.clone(), instances.clone(), commands));
                Some(json(serde_json::json!({"Command": {"CommandId": id,
                    "DocumentName": req["DocumentName"], "InstanceIds": instances,
                    "Status": "Pending"}})))
            }
            "GetCommandInvocation" => {
                let id = req["CommandId"].as_str().unwrap_or("").to_string();
                let known = self.commands.lock().unwrap().iter().any(|c| c.0 == id);
                if !known {
                    return Some(error(400, "InvocationDoesNotExist", "No such invocation."));
                }
                let (status, output) = self
                    .done
                    .lock()
                    .unwrap()
                    .get(&id)
                    .cloned()
                    .unwrap_or(("InProgress".into(), String::new()));
                Some(json(
                    serde_json::json!({"CommandId": id, "InstanceId": req["InstanceId"],
                    "Status": status, "StatusDetails": status,
                    "StandardOutputContent": "", "StandardErrorContent": output}),
                ))
            }
            _ => None,
        }
    }

    /// `GET /_ssm/commands`: what Run Command was asked to run, for the test's agent.
    pub fn commands_json(&self) -> String {
        let all = self.commands.lock().unwrap();
        serde_json::json!(all
            .iter()
            .map(|(id, i, c)| serde_json::json!({"id": id, "instances": i, "commands": c}))
            .collect::<Vec<_>>())
        .to_string()
    }

    /// `POST /_ssm/done {"id": …, "status": "Success"|"Failed", "output": …}`.
    pub fn command_done(&self, body: &[u8]) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let id = v["id"].as_str().ok_or("needs id")?.to_string();
        let status = v["status"].as_str().unwrap_or("Success").to_string();
        let output = v["output"].as_str().unwrap_or("").to_string();
        self.done.lock().unwrap().insert(id, (status, output));
        Ok(())
    }

    /// The primary ENIs of the instances in a RunInstances answer.
    pub fn enis_of(&self, answer: &MockResponse) -> Vec<String> {
        let text = String::from_utf8_lossy(&answer.body);
        let ids = Regex::new(r"<instanceId>(i-[0-9a-f]+)</instanceId>").unwrap();
        let enis = self.enis.lock().unwrap();
        ids.captures_iter(&text)
            .filter_map(|c| enis.get(&c[1]).map(|e| e.id.clone()))
            .collect()
    }

    /// DescribeNetworkInterfaces with the MAC of each primary ENI this server made (as AWS
    /// lists it; winterbaume's interfaces have none).
    pub fn with_macs(&self, answer: MockResponse) -> MockResponse {
        if answer.status != 200 {
            return answer;
        }
        let macs: HashMap<String, String> = self
            .enis
            .lock()
            .unwrap()
            .values()
            .map(|e| (e.id.clone(), e.mac.clone()))
            .collect();
        if macs.is_empty() {
            return answer;
        }
        let text = String::from_utf8_lossy(&answer.body).to_string();
        let ids = Regex::new(r"<networkInterfaceId>(eni-[0-9a-f]+)</networkInterfaceId>").unwrap();
        let out = ids.replace_all(&text, |c: &regex::Captures| match macs.get(&c[1]) {
            Some(m) => format!("{}<macAddress>{m}</macAddress>", &c[0]),
            None => c[0].to_string(),
        });
        let mut r = answer;
        r.body = out.into_owned().into();
        r
    }

    /// RunInstances or DescribeInstances with each known instance's primary ENI listed.
    pub fn with_interfaces(&self, answer: MockResponse) -> MockResponse {
        if answer.status != 200 {
            return answer;
        }
        let enis = self.enis.lock().unwrap().clone();
        if enis.is_empty() {
            return answer;
        }
        let text = String::from_utf8_lossy(&answer.body).to_string();
        let ids = Regex::new(r"<instanceId>(i-[0-9a-f]+)</instanceId>").unwrap();
        let out = ids.replace_all(&text, |c: &regex::Captures| {
            let Some(e) = enis.get(&c[1]) else {
                return c[0].to_string();
            };
            format!(
                "{}<networkInterfaceSet><item><networkInterfaceId>{}</networkInterfaceId><subnetId>{}</subnetId><status>in-use</status><macAddress>{}</macAddress><privateIpAddress>{}</privateIpAddress><sourceDestCheck>true</sourceDestCheck><interfaceType>interface</interfaceType><attachment><attachmentId>{}</attachmentId><deviceIndex>0</deviceIndex><status>attached</status><deleteOnTermination>true</deleteOnTermination></attachment></item></networkInterfaceSet>",
                &c[0], e.id, e.subnet, e.mac, e.private_ip, e.attachment
            )
        });
        let mut r = answer;
        r.body = out.into_owned().into();
        r
    }
}

/// One internal EC2 call, signed like the request that caused it (routing and region).
async fn call(
    ec2: &dyn MockService,
    like: &MockRequest,
    mut form: Vec<(String, String)>,
) -> String {
    form.push(("Version".to_string(), "2016-11-15".to_string()));
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    let uri = like.uri.split('?').next().unwrap_or(&like.uri).to_string();
    let r = ec2
        .handle(MockRequest {
            method: "POST".into(),
            uri,
            headers: like.headers.clone(),
            body: body.into(),
        })
        .await;
    String::from_utf8_lossy(&r.body).to_string()
}

/// An SSM (JSON protocol) error answer.
fn error(status: u16, code: &str, message: &str) -> MockResponse {
    let mut r = MockResponse::json(
        status,
        serde_json::json!({"__type": code, "message": message}).to_string(),
    );
    r.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    r
}
