//! The security groups of network interfaces, which winterbaume keeps but leaves out of
//! DescribeNetworkInterfaces (`groupSet`): recorded from CreateNetworkInterface,
//! ModifyNetworkInterfaceAttribute and RunInstances (the launched primary ENIs of
//! instances.rs), and added to each interface of the answer, as AWS lists them.

use std::collections::HashMap;
use std::sync::Mutex;

use regex::Regex;
use winterbaume_core::service::MockResponse;

#[derive(Default)]
pub struct Groups {
    of: Mutex<HashMap<String, Vec<String>>>,
}

/// `SecurityGroupId.N` (or a launch's `NetworkInterface.1.SecurityGroupId.N`), in order.
pub fn requested(p: &HashMap<String, String>) -> Vec<String> {
    let mut v: Vec<(u32, String)> = p
        .iter()
        .filter_map(|(k, val)| {
            let n = k
                .strip_prefix("SecurityGroupId.")
                .or_else(|| k.strip_prefix("NetworkInterface.1.SecurityGroupId."))?;
            Some((n.parse().ok()?, val.clone()))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, g)| g).collect()
}

impl Groups {
    pub fn set(&self, eni: &str, groups: Vec<String>) {
        self.of.lock().unwrap().insert(eni.to_string(), groups);
    }

    /// CreateNetworkInterface answered: the new interface has the requested groups.
    pub fn created(&self, p: &HashMap<String, String>, answer: &MockResponse) {
        if answer.status != 200 {
            return;
        }
        let text = String::from_utf8_lossy(&answer.body);
        let id = Regex::new(r"<networkInterfaceId>(eni-[0-9a-f]+)</networkInterfaceId>").unwrap();
        if let Some(c) = id.captures(&text) {
            self.set(&c[1], requested(p));
        }
    }

    /// ModifyNetworkInterfaceAttribute answered: groups, when given, replace the old ones.
    pub fn modified(&self, p: &HashMap<String, String>, answer: &MockResponse) {
        let g = requested(p);
        if answer.status == 200 && !g.is_empty() {
            if let Some(eni) = p.get("NetworkInterfaceId") {
                self.set(eni, g);
            }
        }
    }

    /// DescribeNetworkInterfaces with each interface's `groupSet`.
    pub fn with_groups(&self, answer: MockResponse) -> MockResponse {
        if answer.status != 200 {
            return answer;
        }
        let of = self.of.lock().unwrap().clone();
        let text = String::from_utf8_lossy(&answer.body).to_string();
        let id = Regex::new(r"<networkInterfaceId>(eni-[0-9a-f]+)</networkInterfaceId>").unwrap();
        let out = id.replace_all(&text, |c: &regex::Captures| {
            let items: String = of
                .get(&c[1])
                .into_iter()
                .flatten()
                .map(|g| format!("<item><groupId>{g}</groupId></item>"))
                .collect();
            format!("{}<groupSet>{items}</groupSet>", &c[0])
        });
        let mut r = answer;
        r.body = out.into_owned().into();
        r
    }
}
