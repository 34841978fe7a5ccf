//! How the relay is started on a collector, in one place: the command that runs it over
//! SSH (its source follows on stdin), and the listener that runs it for each Session
//! Manager port session (a script for Run Command, or a file the user data writes).

use super::{source_for, RelayOptions};

/// The remote command that runs the relay, whose source follows on stdin. On-host, the
/// relay needs root for its packet socket (it becomes nobody right after): the login's own
/// if it is root, else `sudo -n` (never a prompt); and it leaves out this SSH connection,
/// which `$SSH_CONNECTION` names ("client port server port").
pub fn remote_command(relay: &RelayOptions) -> String {
    let args: Vec<String> = relay
        .args()
        .into_iter()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect();
    let args = args.join(" ");
    match relay.on_host {
        None => format!("exec python3 - {args}"),
        // python3 is looked for first (a shell builtin), so that a missing one is said as
        // such rather than as whatever sudo makes of it.
        Some(_) => format!(
            "command -v python3 >/dev/null || {{ echo 'python3: not found' >&2; exit 127; }}; S=; [ \"$(id -u)\" = 0 ] || S='sudo -n'; exec $S python3 - {args} --exclude \"$SSH_CONNECTION\""
        ),
    }
}

/// Buffers on the collector, kept small over SSM. The session carries ~1 MB/s, so what
/// does not fit must be dropped (and counted) at once: measured with the loopback agent
/// (benches/ssm_throughput.rs), the relay's default 8 MiB socket buffer and a TCP send
/// buffer left to autotune held ~20 s of packets when the mirror offered more than the
/// session carries, so every packet arrived ~20 s late. 1 MiB of datagrams (~700 whole
/// frames) and 64 KiB of stream keep a burst, not a backlog.
const RELAY_RCVBUF: u32 = 1 << 20;
const RELAY_SNDBUF: u32 = 64 << 10;
/// zlib level of the relay's stream over SSM (see benches/ssm_throughput.rs).
pub const RELAY_ZLIB_LEVEL: u32 = 6;

/// Where the relay listener takes the relay from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayAt<'a> {
    /// Inside the listener script (base64): one self-contained command.
    Inline,
    /// A file on the instance (the collector's user data writes it).
    File(&'a str),
}

/// The relay listener, in Python (3.6+, standard library). Started as root (Run Command),
/// it first becomes `nobody`: neither it nor the relay needs a privilege. It accepts connections on
/// 127.0.0.1:`tcp_port` and runs the embedded relay for each with the connection as its
/// stdout (each later relay waits for the previous one's UDP port, as after a lost SSH
/// tunnel). It exits after `idle_exit_s` seconds with no relay running (0: never). `relay.py`
/// itself is unchanged: it only ever writes to its stdout.
pub fn relay_listener_script(
    relay: &RelayOptions,
    tcp_port: u16,
    idle_exit_s: u32,
    at: RelayAt,
) -> String {
    relay_listener_script_with(relay, tcp_port, idle_exit_s, at, RELAY_ZLIB_LEVEL)
}

/// [`relay_listener_script`] with another zlib level (0: an uncompressed stream; for the
/// benchmark's comparison).
pub fn relay_listener_script_with(
    relay: &RelayOptions,
    tcp_port: u16,
    idle_exit_s: u32,
    at: RelayAt,
    zlib_level: u32,
) -> String {
    let mut relay = relay.clone();
    relay.bind_wait_s = relay.bind_wait_s.max(15);
    let mut args = relay.args();
    args.extend(["--rcvbuf".to_string(), RELAY_RCVBUF.to_string()]);
    // Over ~1 MB/s, headers compress: more packets through the same session.
    if zlib_level > 0 {
        args.extend(["--zlib".to_string(), zlib_level.to_string()]);
    }
    let args = args
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(",");
    // On-host the relay opens its packet socket as root and then becomes nobody itself.
    let on_host = if relay.on_host.is_some() {
        "True"
    } else {
        "False"
    };
    let source = match at {
        RelayAt::Inline => format!(
            "base64.b64decode(\"{}\").decode()",
            base64(source_for(&relay).as_bytes())
        ),
        RelayAt::File(path) => format!("open(\"{path}\").read()"),
    };
    format!(
        r#"import base64,os,socket,subprocess,sys,time
S={source}
A=[{args}]
if os.getuid()==0 and not {on_host}:
    import pwd
    u=pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(u.pw_gid)
    os.setuid(u.pw_uid)
l=socket.socket(socket.AF_INET,socket.SOCK_STREAM)
l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
l.bind(("127.0.0.1",{tcp_port}))
l.listen(4)
l.settimeout(1.0)
kids=[]
idle=time.time()
while True:
    try:
        c,_=l.accept()
    except socket.timeout:
        kids=[k for k in kids if k.poll() is None]
        if kids:
            idle=time.time()
        elif {idle_exit_s}>0 and time.time()-idle>{idle_exit_s}:
            sys.exit(0)
        continue
    c.setsockopt(socket.SOL_SOCKET,socket.SO_SNDBUF,{RELAY_SNDBUF})
    kids.append(subprocess.Popen([sys.executable,"-c",S]+A,stdin=subprocess.DEVNULL,stdout=c.fileno()))
    c.close()
    idle=time.time()
"#
    )
}

/// A shell command (for SSM `SendCommand` with `AWS-RunShellScript`) that starts
/// [`relay_listener_script`] with the relay inline in the background and returns. The
/// script contains no single quote.
pub fn relay_listener_command(relay: &RelayOptions, tcp_port: u16, idle_exit_s: u32) -> String {
    format!(
        "nohup python3 -c '{}' </dev/null >/dev/null 2>&1 &",
        relay_listener_script(relay, tcp_port, idle_exit_s, RelayAt::Inline)
    )
}

/// Standard base64 (RFC 4648, padded).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn the_listener_command_quotes_safely() {
        let r = RelayOptions {
            listen_addr: "0.0.0.0".parse().unwrap(),
            listen_port: 4789,
            snaplen: Some(128),
            bind_wait_s: 0,
            on_host: None,
        };
        let script = relay_listener_script(&r, 4790, 600, RelayAt::Inline);
        assert!(!script.contains('\''));
        assert!(script.contains(r#""--bind-wait","15""#));
        assert!(script.contains(r#""--snaplen","136""#));
        let cmd = relay_listener_command(&r, 4790, 600);
        assert!(cmd.starts_with("nohup python3 -c '") && cmd.ends_with(" &"));
    }
}
