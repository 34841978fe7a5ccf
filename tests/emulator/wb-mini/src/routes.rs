//! Routes through a VPC peering connection or a transit gateway, which winterbaume's
//! CreateRoute drops (it keeps only GatewayId, NatGatewayId and NetworkInterfaceId): the
//! request is passed on with the id as GatewayId, and DescribeRouteTables names it as AWS
//! does (`vpcPeeringConnectionId`, `transitGatewayId`).

use std::collections::HashMap;

use regex::Regex;
use winterbaume_core::service::{MockRequest, MockResponse};

/// CreateRoute with `VpcPeeringConnectionId` or `TransitGatewayId` as `GatewayId`.
pub fn create_route(mut req: MockRequest, p: &HashMap<String, String>) -> MockRequest {
    let via = p
        .get("VpcPeeringConnectionId")
        .or_else(|| p.get("TransitGatewayId"));
    if let (Some(via), None) = (via, p.get("GatewayId")) {
        let mut form: Vec<(String, String)> =
            p.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        form.push(("GatewayId".into(), via.clone()));
        req.body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish()
            .into();
        req.uri = req.uri.split('?').next().unwrap_or(&req.uri).to_string();
    }
    req
}

/// DescribeRouteTables with peering and transit gateway routes named as AWS names them.
pub fn describe(answer: MockResponse) -> MockResponse {
    if answer.status != 200 {
        return answer;
    }
    let text = String::from_utf8_lossy(&answer.body).to_string();
    let gw = Regex::new(r"<gatewayId>((pcx|tgw)-[0-9a-zA-Z]+)</gatewayId>").unwrap();
    let out = gw.replace_all(&text, |c: &regex::Captures| {
        let tag = if &c[2] == "pcx" {
            "vpcPeeringConnectionId"
        } else {
            "transitGatewayId"
        };
        format!("<{tag}>{}</{tag}>", &c[1])
    });
    let mut r = answer;
    r.body = out.into_owned().into();
    r
}
