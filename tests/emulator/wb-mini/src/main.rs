//! wb-mini: EC2 + STS + SSM winterbaume mock served over HTTP on loopback.
//!
//! Usage: wb-mini [--host 127.0.0.1] [--port 5555] [--account-id 123456789012]
//!
//! Extra endpoints:
//! - `POST /_reset`: drop all state (and every fault).
//! - `GET /_health`: `{"status":"ok"}`.
//! - `POST /_fault` with a JSON body, e.g.
//!   `{"action":"CreateTrafficMirrorSession","code":"UnauthorizedOperation",
//!     "message":"You are not authorized to perform this operation.","status":403,"count":1}`:
//!   the next `count` requests for that action (EC2/STS query `Action=`, or the operation of
//!   an SSM `X-Amz-Target`) get AWS's error response for the protocol instead of an answer:
//!   EC2's `<Response><Errors><Error>…`, STS's `<ErrorResponse>…`, SSM's JSON `__type`.
//!   `count` 0 means every request until cleared (default 1); `status` defaults to 400.
//!   With `"delay_ms":N` the matching request is held N ms first; a fault with a delay and
//!   no `code` only delays, then the request is answered normally (a slow call).
//! - `GET /_fault`: the faults with how often each matched (`hits`) and `remaining`.
//! - `DELETE /_fault`: clear every fault.
//!
//! Launched instances get a primary ENI and keep their user data, as in AWS, and their SSM
//! agents are online; `POST /_ssm {"stream_url":…,"token":…}` makes StartSession for them
//! answer with that data channel (a test's peer), `{"ping":"ConnectionLost"}` takes their
//! agents offline; StartSession's URL gets `port=N` (for the test's agent). Run Command:
//! `GET /_ssm/commands` lists what SendCommand asked, `POST /_ssm/done {"id","status",
//! "output"}` ends an invocation (GetCommandInvocation). See instances.rs.
//!
//! Routing is by the SigV4 credential scope (service name) as in winterbaume-server. The
//! scope's region is passed on too (winterbaume reads it from the host name), so each
//! region has its own state as in AWS; a loopback endpoint would otherwise make every
//! request us-east-1.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use regex::Regex;
use tokio::net::TcpListener;
use tokio::sync::RwLock;
use winterbaume_core::service::{MockRequest, MockResponse, MockService};

mod groups;
mod instances;
mod routes;

struct Router {
    routes: Vec<(Regex, Arc<dyn MockService>)>,
    /// Launched instances' primary ENIs and user data (see instances.rs).
    instances: instances::Instances,
    /// Network interfaces' security groups (see groups.rs).
    groups: groups::Groups,
}

impl Router {
    fn fresh() -> Self {
        let services: Vec<Arc<dyn MockService>> = vec![
            Arc::new(winterbaume_ec2::Ec2Service::new()),
            Arc::new(winterbaume_sts::StsService::new()),
            Arc::new(winterbaume_ssm::SsmService::new()),
        ];
        let mut routes = Vec::new();
        for s in services {
            for p in s.url_patterns() {
                routes.push((Regex::new(p).expect("pattern"), Arc::clone(&s)));
            }
        }
        Router {
            routes,
            instances: Default::default(),
            groups: Default::default(),
        }
    }

    fn find(&self, uri: &str, headers: &http::HeaderMap) -> Option<Arc<dyn MockService>> {
        if let Some((_, s)) = self.routes.iter().find(|(re, _)| re.is_match(uri)) {
            return Some(Arc::clone(s));
        }
        // Same order as winterbaume-server: host-derived name first (for a loopback
        // endpoint this yields e.g. "127" and matches nothing), then the SigV4 scope.
        let by_name = |name: Option<String>| {
            let name = name?;
            self.routes
                .iter()
                .find(|(_, s)| s.service_name() == name)
                .map(|(_, s)| Arc::clone(s))
        };
        by_name(winterbaume_core::auth::extract_service_from_uri(uri)).or_else(|| {
            by_name(winterbaume_core::auth::extract_service_from_headers(
                headers,
            ))
        })
    }
}

/// An injected failure (or delay) for one action.
#[derive(Debug, Clone)]
struct Fault {
    action: String,
    code: Option<String>,
    message: String,
    status: u16,
    /// `None`: until cleared.
    remaining: Option<u64>,
    delay_ms: u64,
    hits: u64,
}

impl Fault {
    fn from_json(body: &[u8]) -> Result<Fault, String> {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("fault body is not JSON: {e}"))?;
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let number = |k: &str| v.get(k).and_then(|x| x.as_u64());
        let action = text("action").ok_or("fault needs \"action\"")?;
        let code = text("code").filter(|c| !c.is_empty());
        let delay_ms = number("delay_ms").unwrap_or(0);
        if code.is_none() && delay_ms == 0 {
            return Err("fault needs \"code\" or \"delay_ms\"".into());
        }
        let message = text("message").unwrap_or_else(|| {
            format!(
                "Injected {} for {action}.",
                code.as_deref().unwrap_or("delay")
            )
        });
        let status = number("status").unwrap_or(400);
        let status = u16::try_from(status)
            .ok()
            .filter(|s| (100..600).contains(s))
            .ok_or("fault \"status\" must be an HTTP status")?;
        let remaining = match number("count").unwrap_or(1) {
            0 => None,
            n => Some(n),
        };
        Ok(Fault {
            action,
            code,
            message,
            status,
            remaining,
            delay_ms,
            hits: 0,
        })
    }

    fn json(&self) -> String {
        serde_json::json!({
            "action": self.action,
            "code": self.code,
            "status": self.status,
            "delay_ms": self.delay_ms,
            "hits": self.hits,
            "remaining": self.remaining,
        })
        .to_string()
    }
}

type Faults = Arc<Mutex<Vec<Fault>>>;

/// The AWS operation a request asks for: `Action=` of the query protocols (EC2, STS), or
/// the operation in `X-Amz-Target` (SSM's JSON protocol).
fn action_of(headers: &http::HeaderMap, query: Option<&str>, body: &[u8]) -> Option<String> {
    if let Some(t) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return t.rsplit('.').next().map(str::to_string);
    }
    let from = |bytes: &[u8]| {
        form_urlencoded::parse(bytes)
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.into_owned())
    };
    from(body).or_else(|| query.and_then(|q| from(q.as_bytes())))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// AWS's error response for `service`'s protocol.
fn aws_error(service: &str, status: u16, code: &str, message: &str, n: u64) -> MockResponse {
    let request_id = format!("00000000-0000-4000-8000-{n:012x}");
    let (c, m) = (xml_escape(code), xml_escape(message));
    let mut r = match service {
        "ssm" => MockResponse::json(
            status,
            serde_json::json!({"__type": code, "message": message}).to_string(),
        ),
        "ec2" => MockResponse::xml(
            status,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{c}</Code><Message>{m}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
            ),
        ),
        // STS and the other query services.
        _ => MockResponse::xml(
            status,
            format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{c}</Code><Message>{m}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            ),
        ),
    };
    if service == "ssm" {
        r.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-amz-json-1.1"),
        );
    }
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        r.headers.insert("x-amzn-requestid", v);
    }
    r
}

/// A request's whole body (empty if it cannot be read).
async fn body(req: Request<hyper::body::Incoming>) -> Bytes {
    req.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default()
}

fn reply(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn handle(
    router: Arc<RwLock<Arc<Router>>>,
    faults: Faults,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    if path == "/_reset" && method == "POST" {
        *router.write().await = Arc::new(Router::fresh());
        faults.lock().unwrap().clear();
        return Ok(Response::new(Full::new(Bytes::from_static(
            b"{\"status\":\"reset\"}",
        ))));
    }
    if path == "/_health" {
        return Ok(Response::new(Full::new(Bytes::from_static(
            b"{\"status\":\"ok\"}",
        ))));
    }
    if path == "/_ssm/commands" {
        let current = Arc::clone(&*router.read().await);
        return Ok(reply(200, current.instances.commands_json()));
    }
    if path == "/_ssm/done" && method == "POST" {
        let body = body(req).await;
        let current = Arc::clone(&*router.read().await);
        return Ok(match current.instances.command_done(&body) {
            Ok(()) => reply(200, "{\"status\":\"ok\"}".into()),
            Err(e) => reply(400, serde_json::json!({ "error": e }).to_string()),
        });
    }
    if path == "/_ssm" && method == "POST" {
        let body = body(req).await;
        let current = Arc::clone(&*router.read().await);
        return Ok(match current.instances.set_session(&body) {
            Ok(()) => reply(200, "{\"status\":\"ok\"}".into()),
            Err(e) => reply(400, serde_json::json!({ "error": e }).to_string()),
        });
    }
    if path == "/_fault" {
        return Ok(match method.as_str() {
            "POST" => {
                let body = body(req).await;
                match Fault::from_json(&body) {
                    Ok(f) => {
                        let j = f.json();
                        faults.lock().unwrap().push(f);
                        reply(200, j)
                    }
                    Err(e) => reply(400, serde_json::json!({ "error": e }).to_string()),
                }
            }
            "DELETE" => {
                faults.lock().unwrap().clear();
                reply(200, "[]".into())
            }
            _ => {
                let list: Vec<String> = faults.lock().unwrap().iter().map(Fault::json).collect();
                reply(200, format!("[{}]", list.join(",")))
            }
        });
    }
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let query = req.uri().query().map(str::to_string);
    let headers = req.headers().clone();
    let scope_service = winterbaume_core::auth::extract_service_from_headers(&headers);
    let scope_region = winterbaume_core::auth::extract_region_from_headers(&headers);
    // The region the client signed for, in the host name where winterbaume looks for it.
    let uri = match (&scope_service, &scope_region) {
        (Some(s), Some(r)) if !s.is_empty() && !r.is_empty() => {
            format!("https://{s}.{r}.amazonaws.com{pq}")
        }
        _ => format!("https://{host}{pq}"),
    };
    let body = body(req).await;

    // An injected fault for this action, if one is armed.
    let injected = action_of(&headers, query.as_deref(), &body).and_then(|action| {
        let mut all = faults.lock().unwrap();
        let f = all
            .iter_mut()
            .find(|f| f.action == action && f.remaining != Some(0))?;
        f.hits += 1;
        if let Some(n) = f.remaining.as_mut() {
            *n -= 1;
        }
        Some(f.clone())
    });
    if let Some(f) = &injected {
        if f.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(f.delay_ms)).await;
        }
    }
    let mresp = match injected
        .as_ref()
        .and_then(|f| f.code.as_ref().map(|c| (f, c)))
    {
        Some((f, code)) => aws_error(
            scope_service.as_deref().unwrap_or(""),
            f.status,
            code,
            &f.message,
            f.hits,
        ),
        None => {
            let current = Arc::clone(&*router.read().await);
            let mreq = MockRequest {
                method,
                uri: uri.clone(),
                headers: headers.clone(),
                body,
            };
            match current.find(&uri, &headers) {
                Some(s) if s.service_name() == "ec2" => ec2_call(&current, &*s, mreq).await,
                Some(s) if s.service_name() == "ssm" => ssm_call(&current, &*s, mreq).await,
                Some(s) => s.handle(mreq).await,
                None => MockResponse::json(
                    404,
                    format!(
                        r#"{{"__type":"UnknownService","message":"No service registered for: {uri}"}}"#
                    ),
                ),
            }
        }
    };
    let mut b = Response::builder().status(mresp.status);
    for (k, v) in &mresp.headers {
        b = b.header(k, v);
    }
    Ok(b.body(Full::new(mresp.body)).unwrap())
}

/// An EC2 request, with what instances.rs adds around winterbaume's answer.
async fn ec2_call(router: &Router, ec2: &dyn MockService, req: MockRequest) -> MockResponse {
    let p = instances::params(&req.uri, &req.body);
    let known = &router.instances;
    match p.get("Action").map(String::as_str) {
        Some("DescribeInstanceAttribute") => match known.describe_user_data(&p) {
            Some(r) => r,
            None => ec2.handle(req).await,
        },
        Some("RunInstances") => {
            let r = ec2.handle(req.clone()).await;
            known.launched(ec2, &req, &p, &r).await;
            for eni in known.enis_of(&r) {
                router.groups.set(&eni, groups::requested(&p));
            }
            known.with_interfaces(r)
        }
        Some("CreateNetworkInterface") => {
            let r = ec2.handle(req).await;
            router.groups.created(&p, &r);
            r
        }
        Some("ModifyNetworkInterfaceAttribute") => {
            let r = ec2.handle(req).await;
            router.groups.modified(&p, &r);
            r
        }
        Some("DescribeNetworkInterfaces") => {
            known.with_macs(router.groups.with_groups(ec2.handle(req).await))
        }
        Some("CreateRoute") => ec2.handle(routes::create_route(req, &p)).await,
        Some("DescribeRouteTables") => routes::describe(ec2.handle(req).await),
        Some("DescribeInstances") => known.with_interfaces(ec2.handle(req).await),
        Some("TerminateInstances") => {
            known.terminated(&p);
            ec2.handle(req).await
        }
        _ => ec2.handle(req).await,
    }
}

/// An SSM request: Session Manager for launched instances (instances.rs), else winterbaume.
async fn ssm_call(router: &Router, ssm: &dyn MockService, req: MockRequest) -> MockResponse {
    let target = req
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
        .to_string();
    match router.instances.ssm(&target, &req.body) {
        Some(r) => r,
        None => ssm.handle(req).await,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut host = "127.0.0.1".to_string();
    let mut port: u16 = 5555;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--host" => host = args.next().expect("--host value"),
            "--port" | "-p" => port = args.next().expect("--port value").parse()?,
            "--account-id" => {
                winterbaume_core::set_default_account_id(args.next().expect("--account-id value"))
            }
            _ => {
                eprintln!("usage: wb-mini [--host H] [--port P] [--account-id ID]");
                std::process::exit(2);
            }
        }
    }
    let router = Arc::new(RwLock::new(Arc::new(Router::fresh())));
    let faults: Faults = Arc::default();
    let addr: SocketAddr = format!("{host}:{port}").parse()?;
    let listener = TcpListener::bind(addr).await?;
    // Port 0 support: report the real port on stdout for the test harness.
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let router = Arc::clone(&router);
        let faults = Arc::clone(&faults);
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(Arc::clone(&router), Arc::clone(&faults), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
