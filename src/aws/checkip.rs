//! This machine's public IPv4 address as AWS sees it, from AWS's own
//! https://checkip.amazonaws.com: the one source the security group of an ephemeral
//! collector admits SSH from. `AWSVPC_CHECKIP_URL` points elsewhere (the tests: a server on
//! loopback, over plain HTTP).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_URL: &str = "https://checkip.amazonaws.com/";

/// `a.b.c.d/32`, or one sentence naming `--ssh-allow` as the way around.
pub fn caller_public_address() -> Result<String, String> {
    let url = std::env::var("AWSVPC_CHECKIP_URL").unwrap_or_else(|_| DEFAULT_URL.to_string());
    let failed = |why: String| {
        format!(
            "Cannot find this machine's public address at {url} ({why}), which the collector's security group admits for SSH; set --ssh-allow to the CIDR your SSH connections come from."
        )
    };
    let text = get(&url, Duration::from_secs(5)).map_err(failed)?;
    let ip: std::net::Ipv4Addr = text
        .trim()
        .parse()
        .map_err(|_| failed(format!("it answered {:?}", text.trim())))?;
    Ok(format!("{ip}/32"))
}

/// The body of a small HTTP/1.1 GET (http:// or https://), bounded by `limit` per step.
fn get(url: &str, limit: Duration) -> Result<String, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("not an http or https URL".into());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| "bad port".to_string())?),
        None => (authority, if tls { 443 } else { 80 }),
    };
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{host} does not resolve: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} does not resolve"))?;
    let sock = TcpStream::connect_timeout(&addr, limit).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: awsvpc/{}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let mut answer = Vec::new();
    if tls {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let conn =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let mut s = rustls::StreamOwned::new(conn, sock);
        s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        read_all(&mut s, &mut answer)?;
    } else {
        let mut s = sock;
        s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        read_all(&mut s, &mut answer)?;
    }
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("HTTP {status}"));
    }
    Ok(body.to_string())
}

/// Reads until the server closes (`Connection: close`), at most 64 KB. A TLS peer that
/// closes without close_notify still gave a whole answer.
fn read_all(r: &mut impl Read, out: &mut Vec<u8>) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) if out.len() + n <= 65536 => out.extend_from_slice(&buf[..n]),
            Ok(_) => return Err("the answer is too long".into()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {
                return Ok(())
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve(answer: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; 1024];
            let _ = c.read(&mut req);
            let _ = c.write_all(answer.as_bytes());
        });
        url
    }

    #[test]
    fn reads_the_address_from_a_loopback_server() {
        let url = serve("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n203.0.113.7\n");
        assert_eq!(get(&url, Duration::from_secs(5)).unwrap(), "203.0.113.7\n");
        let url = serve("HTTP/1.1 503 Slow Down\r\n\r\n");
        assert_eq!(get(&url, Duration::from_secs(5)).unwrap_err(), "HTTP 503");
        assert!(get("ftp://x/", Duration::from_secs(1)).is_err());
    }
}
