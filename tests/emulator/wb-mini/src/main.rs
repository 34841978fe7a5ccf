//! wb-mini: EC2 + STS + SSM winterbaume mock served over HTTP on loopback.
//!
//! Usage: wb-mini [--host 127.0.0.1] [--port 5555] [--account-id 123456789012]
//! Extra endpoints: POST /_reset (drop all state), GET /_health.
//! Routing is by the SigV4 credential scope (service name) as in winterbaume-server.
use std::net::SocketAddr;
use std::sync::Arc;

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

struct Router {
    routes: Vec<(Regex, Arc<dyn MockService>)>,
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
        Router { routes }
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
        by_name(winterbaume_core::auth::extract_service_from_uri(uri))
            .or_else(|| by_name(winterbaume_core::auth::extract_service_from_headers(headers)))
    }
}

async fn handle(
    router: Arc<RwLock<Arc<Router>>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    if path == "/_reset" && method == "POST" {
        *router.write().await = Arc::new(Router::fresh());
        return Ok(Response::new(Full::new(Bytes::from_static(b"{\"status\":\"reset\"}"))));
    }
    if path == "/_health" {
        return Ok(Response::new(Full::new(Bytes::from_static(b"{\"status\":\"ok\"}"))));
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
    let uri = format!("https://{host}{pq}");
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let current = Arc::clone(&*router.read().await);
    let mreq = MockRequest { method, uri: uri.clone(), headers: headers.clone(), body };
    let mresp = match current.find(&uri, &headers) {
        Some(s) => s.handle(mreq).await,
        None => MockResponse::json(
            404,
            format!(r#"{{"__type":"UnknownService","message":"No service registered for: {uri}"}}"#),
        ),
    };
    let mut b = Response::builder().status(mresp.status);
    for (k, v) in &mresp.headers {
        b = b.header(k, v);
    }
    Ok(b.body(Full::new(mresp.body)).unwrap())
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
    let addr: SocketAddr = format!("{host}:{port}").parse()?;
    let listener = TcpListener::bind(addr).await?;
    // Port 0 support: report the real port on stdout for the test harness.
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let router = Arc::clone(&router);
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(Arc::clone(&router), req));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
