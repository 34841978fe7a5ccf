//! Narrowing: the capture filter translated into traffic-mirror filter rules, so that AWS
//! mirrors (and bills, and carries to the collector) a superset of what the filter keeps
//! rather than everything.
//!
//! libpcap still decides exactly on the collector (`filter`); the rules only have to be
//! conservative: every packet the filter accepts must match an accept rule. The part of
//! libpcap's syntax that rules can express (addresses, IP protocols, TCP/UDP ports) is
//! parsed; anything else, negations included, reads as "any packet". The expression is
//! expanded into a disjunction of conjunctions, each becomes IPv4 and/or IPv6 rules, and
//! rules that do not fit the quota are widened (ports, then addresses, then protocols).
//!
//! The same rules serve ingress and egress: AWS matches a rule's source and destination
//! against the packet's own address fields in both directions, as libpcap does.
//!
//! libpcap semantics the translation follows (checked against `tcpdump -d`, libpcap 1.10):
//! - `and` and `or` have equal precedence and associate left to right.
//! - `port`/`portrange` without `tcp`/`udp` also match SCTP, whose ports rules cannot carry.
//! - For IPv6, `tcp`, `udp`, `icmp6` and `ip6 proto N` also match when the first next header
//!   is a fragment header followed by N; port matches require the header directly.
//! - `tcp[…]`, `udp[…]`, `icmp[…]` and `ip[…]` loads exist for IPv4 only.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::ethernet::{Frame, ETHERTYPE_IPV4, ETHERTYPE_IPV6};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Accept,
    Reject,
}

/// An address block with its host bits cleared, IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `prefix` is clamped to the family's width; host bits are cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Self {
        let prefix = prefix.min(width(addr));
        Cidr {
            addr: from_bits(addr.is_ipv6(), bits(addr) & mask(addr.is_ipv6(), prefix)),
            prefix,
        }
    }

    /// 0.0.0.0/0 or ::/0.
    pub fn any(v6: bool) -> Self {
        let addr = if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        Cidr { addr, prefix: 0 }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.addr.is_ipv6()
            && bits(ip) & mask(ip.is_ipv6(), self.prefix) == bits(self.addr)
    }

    fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// The smallest block holding both (same family).
    fn join(&self, other: &Cidr) -> Cidr {
        let v6 = self.addr.is_ipv6();
        let diff = bits(self.addr) ^ bits(other.addr);
        let same = if v6 {
            diff.leading_zeros()
        } else {
            (diff as u32).leading_zeros()
        };
        let prefix = self.prefix.min(other.prefix).min(same as u8);
        Cidr::new(self.addr, prefix)
    }

    fn intersect(a: Option<Cidr>, b: Option<Cidr>) -> Option<Option<Cidr>> {
        match (a, b) {
            (None, x) | (x, None) => Some(x),
            (Some(x), Some(y)) if x.is_ipv4() != y.is_ipv4() => None,
            (Some(x), Some(y)) if x.covers(&y) => Some(Some(y)),
            (Some(x), Some(y)) if y.covers(&x) => Some(Some(x)),
            _ => None,
        }
    }

    fn fam(&self) -> u8 {
        if self.is_ipv4() {
            V4
        } else {
            V6
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn width(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(v6: bool, b: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::from(b as u32))
    }
}

fn mask(v6: bool, prefix: u8) -> u128 {
    let all = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    let host = all.checked_shr(u32::from(prefix)).unwrap_or(0);
    all & !host
}

/// One traffic-mirror filter rule. Ports only apply with protocol 6 or 17 (AWS's rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    /// IANA protocol number; `None` is every protocol.
    pub protocol: Option<u8>,
    pub source: Cidr,
    pub destination: Cidr,
    pub source_ports: Option<(u16, u16)>,
    pub destination_ports: Option<(u16, u16)>,
    pub description: String,
}

impl Rule {
    /// Accepts every packet of one address family.
    pub fn accept_all(v6: bool) -> Self {
        Rule {
            action: Action::Accept,
            protocol: None,
            source: Cidr::any(v6),
            destination: Cidr::any(v6),
            source_ports: None,
            destination_ports: None,
            description: format!("awsvpc: all {}", if v6 { "IPv6" } else { "IPv4" }),
        }
    }

    pub fn is_ipv6(&self) -> bool {
        !self.source.is_ipv4()
    }

    fn is_universal(&self) -> bool {
        self.protocol.is_none() && self.source.prefix == 0 && self.destination.prefix == 0
    }

    fn has_ports(&self) -> bool {
        self.source_ports.is_some() || self.destination_ports.is_some()
    }

    /// Every packet `other` matches, `self` matches too.
    fn covers(&self, other: &Rule) -> bool {
        self.is_ipv6() == other.is_ipv6()
            && (self.protocol.is_none() || self.protocol == other.protocol)
            && self.source.covers(&other.source)
            && self.destination.covers(&other.destination)
            && range_covers(self.source_ports, other.source_ports)
            && range_covers(self.destination_ports, other.destination_ports)
    }

    /// The narrowest rule matching everything either matches (same family).
    fn join(&self, other: &Rule) -> Rule {
        let protocol = if self.protocol == other.protocol {
            self.protocol
        } else {
            None
        };
        let ports = |a: Option<(u16, u16)>, b: Option<(u16, u16)>| match (protocol, a, b) {
            (Some(_), Some(x), Some(y)) => Some((x.0.min(y.0), x.1.max(y.1))),
            _ => None,
        };
        Rule {
            action: Action::Accept,
            protocol,
            source: self.source.join(&other.source),
            destination: self.destination.join(&other.destination),
            source_ports: ports(self.source_ports, other.source_ports),
            destination_ports: ports(self.destination_ports, other.destination_ports),
            description: String::new(),
        }
    }

    fn sort_key(&self) -> impl Ord {
        (
            self.is_ipv6(),
            self.protocol,
            self.source,
            self.destination,
            self.source_ports,
            self.destination_ports,
        )
    }
}

fn range_covers(a: Option<(u16, u16)>, b: Option<(u16, u16)>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a.0 <= b.0 && b.1 <= a.1,
    }
}

fn range_size(r: Option<(u16, u16)>) -> u64 {
    r.map_or(65536, |(a, b)| u64::from(b) - u64::from(a) + 1)
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Accept => "accept",
            Action::Reject => "reject",
        };
        let proto = match self.protocol {
            None => "all".to_string(),
            Some(6) => "tcp".to_string(),
            Some(17) => "udp".to_string(),
            Some(1) => "icmp".to_string(),
            Some(58) => "icmp6".to_string(),
            Some(p) => format!("proto {p}"),
        };
        let ports = |r: Option<(u16, u16)>| match r {
            None => String::new(),
            Some((a, b)) if a == b => format!(" port {a}"),
            Some((a, b)) => format!(" ports {a}-{b}"),
        };
        write!(
            f,
            "{action} {proto} from {}{} to {}{}",
            self.source,
            ports(self.source_ports),
            self.destination,
            ports(self.destination_ports)
        )
    }
}

/// What the capture filter narrows to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowing {
    /// Accept rules, in no particular order; the same list serves ingress and egress.
    pub rules: Vec<Rule>,
    /// What fell back to "mirror everything" and why, one sentence each, for the log.
    pub notes: Vec<String>,
    /// The rules accept every IPv4 and IPv6 packet: nothing was narrowed.
    pub accept_all: bool,
}

/// Fewer free rule slots than address families the filter needs: no superset fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the capture filter needs at least {needed} traffic-mirror rule(s) per direction (one per address family) but only {budget} are free")]
pub struct BudgetTooSmall {
    pub needed: usize,
    pub budget: usize,
}

/// Longer filters are not narrowed; it bounds the parser's recursion and the expansion.
const MAX_TOKENS: usize = 400;
const MAX_DEPTH: usize = 48;
const MAX_TERMS: usize = 256;
const MAX_PRODUCT: usize = 1024;
/// Above this many rules, widen coarsely before the pairwise search (which is cubic).
const MAX_PAIRWISE: usize = 32;
const MAX_NOTES: usize = 6;

const V4: u8 = 1;
const V6: u8 = 2;
/// IPv6 extension headers: a reader that looks past them sees another protocol, so a rule
/// naming one of these numbers is not dependable for IPv6.
const IPV6_EXTENSIONS: [u8; 8] = [0, 43, 44, 51, 60, 135, 139, 140];
const IPV6_FRAGMENT: u8 = 44;

/// Translates `filter` into at most `budget_per_direction` accept rules that match every
/// IPv4/IPv6 packet the filter accepts. Never panics; work is bounded whatever the input.
pub fn narrow(
    filter: Option<&str>,
    budget_per_direction: usize,
) -> Result<Narrowing, BudgetTooSmall> {
    let mut notes = Notes::default();
    let terms = match filter.map(str::trim) {
        None | Some("") => vec![Term::ANY],
        Some(f) => terms_of(f, &mut notes),
    };
    let mut rules = Vec::new();
    for t in &terms {
        t.push_rules(&mut rules);
    }
    simplify(&mut rules);
    if rules.is_empty() {
        notes.push("The capture filter matches no IPv4 or IPv6 packet: nothing is mirrored.");
    }
    widen(&mut rules, budget_per_direction, &mut notes)?;
    rules.sort_by_key(Rule::sort_key);
    let accept_all = [false, true]
        .iter()
        .all(|v6| rules.iter().any(|r| r.is_ipv6() == *v6 && r.is_universal()));
    for r in &mut rules {
        if r.is_universal() {
            r.description = Rule::accept_all(r.is_ipv6()).description;
        } else {
            r.description = "awsvpc: narrowed from the capture filter".into();
        }
    }
    Ok(Narrowing {
        rules,
        notes: notes.finish(),
        accept_all,
    })
}

#[derive(Default)]
struct Notes {
    list: Vec<String>,
    dropped: usize,
}

impl Notes {
    fn push(&mut self, s: impl Into<String>) {
        let s = s.into();
        if self.list.contains(&s) {
            return;
        }
        if self.list.len() < MAX_NOTES {
            self.list.push(s);
        } else {
            self.dropped += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.list
                .push(format!("{} more parts are mirrored in full.", self.dropped));
        }
        self.list
    }
}

/// At most 60 characters of filter text, for notes.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn terms_of(filter: &str, notes: &mut Notes) -> Vec<Term> {
    let toks = tokenize(filter);
    if toks.len() > MAX_TOKENS {
        notes.push(format!(
            "The capture filter is too long to narrow ({} tokens): everything is mirrored.",
            toks.len()
        ));
        return vec![Term::ANY];
    }
    // These make libpcap read every later field at a shifted offset, including the
    // primitives before them in the text (libpcap's compiler state is global).
    if let Some(t) = toks
        .iter()
        .find(|t| t.kind == K::Word && matches!(t.text, "vlan" | "mpls" | "pppoes" | "geneve"))
    {
        notes.push(format!(
            "`{}` shifts where libpcap reads every other field: the filter is not narrowed.",
            t.text
        ));
        return vec![Term::ANY];
    }
    let mut p = Parser {
        toks,
        pos: 0,
        last: None,
        depth: 0,
        notes,
    };
    let parsed = p.expr().and_then(|e| match p.toks.get(p.pos) {
        None => Ok(e),
        Some(t) => Err(format!("unexpected `{}`", t.text)),
    });
    let expr = match parsed {
        Ok(e) => e,
        Err(why) => {
            // Notes on parts no longer matter: nothing is narrowed.
            p.notes.list.clear();
            p.notes.push(format!(
                "The capture filter could not be narrowed ({}): everything is mirrored.",
                excerpt(&why)
            ));
            return vec![Term::ANY];
        }
    };
    match dnf(&expr, 0) {
        Some(t) => t,
        None => {
            notes.list.clear();
            notes.push(
                "The capture filter has too many alternatives to narrow: everything is mirrored.",
            );
            vec![Term::ANY]
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tokens and parser.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum K {
    LParen,
    RParen,
    Not,
    And,
    Or,
    Slash,
    Word,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    kind: K,
    text: &'a str,
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-' | b'\\')
}

fn tokenize(s: &str) -> Vec<Tok<'_>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let next = b.get(i + 1).copied();
        let kind = match c {
            b'(' => K::LParen,
            b')' => K::RParen,
            b'/' => K::Slash,
            b'!' if next == Some(b'=') => {
                i += 1;
                K::Other
            }
            b'!' => K::Not,
            b'&' if next == Some(b'&') => {
                i += 1;
                K::And
            }
            b'|' if next == Some(b'|') => {
                i += 1;
                K::Or
            }
            c if is_word_byte(c) => {
                while i + 1 < b.len() && is_word_byte(b[i + 1]) {
                    i += 1;
                }
                K::Word
            }
            _ => {
                // One character, however many bytes it takes.
                i += s[start..].chars().next().map_or(1, char::len_utf8) - 1;
                K::Other
            }
        };
        i += 1;
        let text = s.get(start..i).unwrap_or("");
        let kind = match (kind, text) {
            (K::Word, "and") => K::And,
            (K::Word, "or") => K::Or,
            (K::Word, "not") => K::Not,
            (k, _) => k,
        };
        out.push(Tok { kind, text });
    }
    out
}

/// A constraint a rule can express.
#[derive(Debug, Clone, Copy)]
enum Atom {
    Family(u8),
    /// `direct`: IPv6 must carry it in the fixed header's next header (libpcap's port
    /// matches); otherwise a fragment header may come first.
    Proto {
        num: u8,
        direct: bool,
        fams: u8,
    },
    Src(Cidr),
    Dst(Cidr),
    SrcPorts(u16, u16),
    DstPorts(u16, u16),
}

#[derive(Debug)]
enum Expr {
    /// Any packet: what cannot be expressed, and every negation.
    Any,
    Atom(Atom),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    fn combine(op: K, lhs: Expr, rhs: Expr) -> Expr {
        match (op, lhs) {
            (K::And, Expr::And(mut v)) => {
                v.push(rhs);
                Expr::And(v)
            }
            (K::Or, Expr::Or(mut v)) => {
                v.push(rhs);
                Expr::Or(v)
            }
            (K::And, l) => Expr::And(vec![l, rhs]),
            (_, l) => Expr::Or(vec![l, rhs]),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pq {
    Default,
    Ip,
    Ip6,
    Tcp,
    Udp,
    Sctp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Either,
    Src,
    Dst,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Default,
    Host,
    Net,
    Port,
    PortRange,
    Proto,
}

/// libpcap's qualifiers, which a bare id after `and`/`or` inherits (`host a or b`).
#[derive(Debug, Clone, Copy)]
struct Qual {
    pq: Pq,
    dir: Dir,
    kind: Kind,
}

type PResult<T> = Result<T, String>;

struct Parser<'a, 'n> {
    toks: Vec<Tok<'a>>,
    pos: usize,
    /// The qualifiers a bare id would inherit; `None` where we are not sure which libpcap
    /// would use (a bare id then reads as any packet).
    last: Option<Qual>,
    depth: usize,
    notes: &'n mut Notes,
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> Option<Tok<'a>> {
        self.toks.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<Tok<'a>> {
        self.toks.get(self.pos + n).copied()
    }

    fn peek_kind(&self) -> Option<K> {
        self.peek().map(|t| t.kind)
    }

    fn peek_word(&self, n: usize) -> Option<&'a str> {
        self.peek_at(n)
            .filter(|t| t.kind == K::Word)
            .map(|t| t.text)
    }

    fn text(&self, from: usize, to: usize) -> String {
        let parts: Vec<&str> = self
            .toks
            .get(from..to.min(self.toks.len()))
            .unwrap_or(&[])
            .iter()
            .map(|t| t.text)
            .collect();
        excerpt(&parts.join(" "))
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        Ok(())
    }

    /// expr := term ((and|or) term)*, equal precedence, left to right (libpcap's grammar).
    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let mut acc = self.term()?;
        while let Some(op @ (K::And | K::Or)) = self.peek_kind() {
            self.pos += 1;
            let rhs = self.term()?;
            acc = Expr::combine(op, acc, rhs);
        }
        self.depth -= 1;
        Ok(acc)
    }

    fn term(&mut self) -> PResult<Expr> {
        self.enter()?;
        let start = self.pos;
        let e = match self.peek() {
            Some(Tok { kind: K::Not, .. }) => {
                self.pos += 1;
                self.term()?;
                self.note_negation(start);
                Expr::Any
            }
            Some(Tok {
                kind: K::LParen, ..
            }) => {
                self.pos += 1;
                let e = self.expr()?;
                self.expect_rparen()?;
                // libpcap inherits across parentheses in ways not worth mirroring here.
                self.last = None;
                e
            }
            Some(Tok {
                kind: K::Word,
                text,
            }) => self.primitive(text)?,
            Some(t) => return Err(format!("unexpected `{}`", t.text)),
            None => return Err("unexpected end".into()),
        };
        self.depth -= 1;
        Ok(e)
    }

    fn expect_rparen(&mut self) -> PResult<()> {
        match self.peek_kind() {
            Some(K::RParen) => {
                self.pos += 1;
                Ok(())
            }
            _ => Err("unbalanced parentheses".into()),
        }
    }

    fn note_negation(&mut self, start: usize) {
        let text = self.text(start, self.pos);
        self.notes.push(format!(
            "`{text}` is a negation, which mirror rules cannot express: mirrored in full."
        ));
    }

    fn at_end_of_primitive(&self) -> bool {
        matches!(self.peek_kind(), None | Some(K::And | K::Or | K::RParen))
    }

    fn primitive(&mut self, word: &'a str) -> PResult<Expr> {
        let start = self.pos;
        let pq = match word {
            "ip" => Some(Pq::Ip),
            "ip6" => Some(Pq::Ip6),
            "tcp" => Some(Pq::Tcp),
            "udp" => Some(Pq::Udp),
            "sctp" => Some(Pq::Sctp),
            _ => None,
        };
        let abbrev = match word {
            "ip" => Some(Atom::Family(V4)),
            "ip6" => Some(Atom::Family(V6)),
            "tcp" => Some(proto_atom(6, V4 | V6)),
            "udp" => Some(proto_atom(17, V4 | V6)),
            "sctp" => Some(proto_atom(132, V4 | V6)),
            "icmp" => Some(proto_atom(1, V4)),
            "icmp6" => Some(proto_atom(58, V6)),
            "igmp" => Some(proto_atom(2, V4)),
            _ => None,
        };
        if let Some(a) = abbrev {
            self.pos += 1;
            if self.at_end_of_primitive() {
                self.last = None;
                return Ok(Expr::Atom(a));
            }
            if let (Some(pq), Some(next)) = (pq, self.peek_word(0)) {
                if is_head_word(next) {
                    return self.head(pq, start);
                }
            }
            return Ok(self.unknown(start));
        }
        if is_head_word(word) {
            return self.head(Pq::Default, start);
        }
        if let Some(q) = self.last.filter(|_| looks_like_id(word)) {
            return self.id(q);
        }
        Ok(self.unknown(start))
    }

    /// Something rules cannot express, up to the next `and`/`or`/`)` at its level.
    fn unknown(&mut self, start: usize) -> Expr {
        self.pos = start;
        let mut depth = 0usize;
        while let Some(t) = self.peek() {
            match t.kind {
                K::LParen => depth += 1,
                K::RParen if depth == 0 => break,
                K::RParen => depth -= 1,
                K::And | K::Or if depth == 0 => break,
                _ => {}
            }
            self.pos += 1;
        }
        self.last = None;
        let implied = self.loads_implied(start, self.pos);
        let text = self.text(start, self.pos);
        self.notes.push(format!(
            "`{text}` cannot be expressed as mirror rules: mirrored in full{}.",
            if implied.is_empty() {
                ""
            } else {
                " (only its protocol narrows)"
            }
        ));
        if implied.is_empty() {
            Expr::Any
        } else {
            Expr::And(implied.into_iter().map(Expr::Atom).collect())
        }
    }

    /// A relation that loads `tcp[…]`, `ip6[…]`… holds only for packets of that protocol:
    /// libpcap ANDs each load's protocol test into the relation.
    fn loads_implied(&self, from: usize, to: usize) -> Vec<Atom> {
        let toks = self.toks.get(from..to).unwrap_or(&[]);
        toks.windows(2)
            .filter(|w| w[0].kind == K::Word && w[1].kind == K::Other && w[1].text == "[")
            .filter_map(|w| match w[0].text {
                "ip" => Some(Atom::Family(V4)),
                "ip6" => Some(Atom::Family(V6)),
                "tcp" => Some(proto_atom(6, V4)),
                "udp" => Some(proto_atom(17, V4)),
                "icmp" => Some(proto_atom(1, V4)),
                "icmp6" => Some(proto_atom(58, V6)),
                _ => None,
            })
            .collect()
    }

    /// head := [pq] [dir] [host|net|port|portrange|proto] id
    fn head(&mut self, pq: Pq, start: usize) -> PResult<Expr> {
        let dir = match self.peek_word(0) {
            Some(d @ ("src" | "dst")) => {
                self.pos += 1;
                let other = if d == "src" { "dst" } else { "src" };
                let both = match (self.peek_kind(), self.peek_word(1)) {
                    (Some(K::Or), Some(w)) if w == other => Some(Dir::Either),
                    (Some(K::And), Some(w)) if w == other => Some(Dir::Both),
                    _ => None,
                };
                match both {
                    Some(b) => {
                        self.pos += 2;
                        b
                    }
                    None if d == "src" => Dir::Src,
                    None => Dir::Dst,
                }
            }
            _ => Dir::Either,
        };
        let kind = match self.peek_word(0) {
            Some("host") => Kind::Host,
            Some("net") => Kind::Net,
            Some("port") => Kind::Port,
            Some("portrange") => Kind::PortRange,
            Some("proto") => Kind::Proto,
            _ => Kind::Default,
        };
        if kind != Kind::Default {
            self.pos += 1;
        } else if self.pos == start || (pq != Pq::Default && self.pos == start + 1) {
            // `gateway`, `broadcast`, `protochain`… or a qualifier with nothing after it.
            return Ok(self.unknown(start));
        }
        if self.at_end_of_primitive() {
            return Err(format!("`{}` lacks its value", self.text(start, self.pos)));
        }
        let q = Qual { pq, dir, kind };
        self.last = Some(q);
        self.id(q)
    }

    /// id := [not] value | '(' id ((and|or) id)* ')' — values inherit the qualifiers.
    fn id(&mut self, q: Qual) -> PResult<Expr> {
        self.enter()?;
        let start = self.pos;
        let e = match self.peek() {
            Some(Tok { kind: K::Not, .. }) => {
                self.pos += 1;
                self.id(q)?;
                self.note_negation(start);
                Expr::Any
            }
            Some(Tok {
                kind: K::LParen, ..
            }) => {
                self.pos += 1;
                let mut acc = self.id(q)?;
                while let Some(op @ (K::And | K::Or)) = self.peek_kind() {
                    self.pos += 1;
                    let rhs = self.id(q)?;
                    acc = Expr::combine(op, acc, rhs);
                }
                self.expect_rparen()?;
                acc
            }
            Some(Tok {
                kind: K::Word,
                text,
            }) => {
                self.pos += 1;
                let suffix = match (self.peek(), self.peek_word(1)) {
                    (Some(Tok { kind: K::Slash, .. }), Some(n)) => Some(Suffix::Len(n)),
                    (
                        Some(Tok {
                            kind: K::Word,
                            text: "mask",
                        }),
                        Some(m),
                    ) => Some(Suffix::Mask(m)),
                    _ => None,
                };
                if suffix.is_some() {
                    self.pos += 2;
                }
                match value(q, text, suffix) {
                    Some(e) => e,
                    None => {
                        let text = self.text(start, self.pos);
                        self.notes.push(format!(
                            "`{text}` is not an address, port or protocol number awsvpc can narrow to: mirrored in full."
                        ));
                        Expr::Any
                    }
                }
            }
            Some(t) => return Err(format!("unexpected `{}`", t.text)),
            None => return Err("unexpected end".into()),
        };
        self.depth -= 1;
        Ok(e)
    }
}

fn is_head_word(w: &str) -> bool {
    matches!(
        w,
        "src" | "dst" | "host" | "net" | "port" | "portrange" | "proto"
    )
}

/// What libpcap lexes as a number or an address rather than a keyword or a name.
fn looks_like_id(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_digit()) || w.contains(':')
}

fn proto_atom(num: u8, fams: u8) -> Atom {
    Atom::Proto {
        num,
        direct: false,
        fams,
    }
}

#[derive(Debug, Clone, Copy)]
enum Suffix<'a> {
    Len(&'a str),
    Mask(&'a str),
}

/// The expression for one id under qualifiers `q`; `None` when it is not one we narrow.
fn value(q: Qual, word: &str, suffix: Option<Suffix<'_>>) -> Option<Expr> {
    let directed = |src: Atom, dst: Atom| match q.dir {
        Dir::Either => Expr::Or(vec![Expr::Atom(src), Expr::Atom(dst)]),
        Dir::Src => Expr::Atom(src),
        Dir::Dst => Expr::Atom(dst),
        Dir::Both => Expr::And(vec![Expr::Atom(src), Expr::Atom(dst)]),
    };
    match q.kind {
        Kind::Port | Kind::PortRange => {
            if suffix.is_some() {
                return None;
            }
            let (lo, hi) = match (q.kind, word.split_once('-')) {
                (Kind::PortRange, Some((a, b))) => (port_num(a)?, port_num(b)?),
                _ => (port_num(word)?, port_num(word)?),
            };
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let protos: &[u8] = match q.pq {
                Pq::Default => &[6, 17, 132],
                Pq::Tcp => &[6],
                Pq::Udp => &[17],
                Pq::Sctp => &[132],
                Pq::Ip | Pq::Ip6 => return None,
            };
            Some(Expr::Or(
                protos
                    .iter()
                    .map(|p| {
                        Expr::And(vec![
                            Expr::Atom(Atom::Proto {
                                num: *p,
                                direct: true,
                                fams: V4 | V6,
                            }),
                            directed(Atom::SrcPorts(lo, hi), Atom::DstPorts(lo, hi)),
                        ])
                    })
                    .collect(),
            ))
        }
        Kind::Proto => {
            let fams = match q.pq {
                Pq::Default => V4 | V6,
                Pq::Ip => V4,
                Pq::Ip6 => V6,
                _ => return None,
            };
            if suffix.is_some() || q.dir != Dir::Either {
                return None;
            }
            let num = match word {
                "\\tcp" => 6,
                "\\udp" => 17,
                "\\icmp" => 1,
                w => u8::try_from(number(w)?).ok()?,
            };
            Some(Expr::Atom(proto_atom(num, fams)))
        }
        Kind::Host | Kind::Net | Kind::Default => {
            let cidr = address(word, suffix, q.kind == Kind::Net)?;
            match (q.pq, cidr.is_ipv4()) {
                (Pq::Default, _) | (Pq::Ip, true) | (Pq::Ip6, false) => {}
                _ => return None,
            }
            Some(directed(Atom::Src(cidr), Atom::Dst(cidr)))
        }
    }
}

fn port_num(w: &str) -> Option<u16> {
    u16::try_from(number(w)?).ok()
}

/// libpcap's numbers: 0x hex, leading-zero octal, else decimal.
fn number(w: &str) -> Option<u32> {
    let (digits, radix) = if let Some(h) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        (h, 16)
    } else if w.len() > 1 && w.starts_with('0') {
        (&w[1..], 8)
    } else {
        (w, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// An address id: IPv6 literal, dotted IPv4 (libpcap reads `10.1` as 10.1.0.0/16), or for
/// `net` a bare number (`net 10` is 10.0.0.0/8); optional `/len` or `mask m`.
fn address(word: &str, suffix: Option<Suffix<'_>>, is_net: bool) -> Option<Cidr> {
    if word.contains(':') {
        let a: Ipv6Addr = word.parse().ok()?;
        let len = match suffix {
            None => 128,
            Some(Suffix::Len(n)) => u8::try_from(number(n)?).ok().filter(|l| *l <= 128)?,
            Some(Suffix::Mask(_)) => return None,
        };
        return Some(Cidr::new(IpAddr::V6(a), len));
    }
    let (v, implied) = if word.contains('.') {
        dotted(word)?
    } else if is_net && suffix.is_none() {
        // libpcap shifts a short net number left until its top byte is set.
        let mut v = number(word)?;
        let mut m = u32::MAX;
        while v != 0 && v & 0xff00_0000 == 0 {
            v <<= 8;
            m <<= 8;
        }
        (v, m.leading_ones() as u8)
    } else {
        return None;
    };
    let len = match suffix {
        None => implied,
        Some(Suffix::Len(n)) => u8::try_from(number(n)?).ok().filter(|l| *l <= 32)?,
        // A mask with holes: its leading ones give a block that still holds every match.
        Some(Suffix::Mask(m)) => dotted(m)?.0.leading_ones() as u8,
    };
    Some(Cidr::new(IpAddr::V4(Ipv4Addr::from(v)), len))
}

/// "a.b.c.d" or a shorter "a.b": the value left-aligned and the bits given.
fn dotted(w: &str) -> Option<(u32, u8)> {
    let mut v: u32 = 0;
    let mut n = 0u8;
    for part in w.split('.') {
        if n == 4 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let octet: u8 = part.parse().ok()?;
        v = (v << 8) | u32::from(octet);
        n += 1;
    }
    let bits = 8 * n;
    Some((v.checked_shl(32 - u32::from(bits)).unwrap_or(0), bits))
}

// ---------------------------------------------------------------------------------------
// Disjunctive normal form.

/// A conjunction of atoms: the packets it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Term {
    fams: u8,
    proto: Option<(u8, bool)>,
    src: Option<Cidr>,
    dst: Option<Cidr>,
    sport: Option<(u16, u16)>,
    dport: Option<(u16, u16)>,
}

impl Term {
    const ANY: Term = Term {
        fams: V4 | V6,
        proto: None,
        src: None,
        dst: None,
        sport: None,
        dport: None,
    };

    fn of(a: Atom) -> Term {
        let mut t = Term::ANY;
        match a {
            Atom::Family(f) => t.fams = f,
            Atom::Proto { num, direct, fams } => {
                t.fams = fams;
                t.proto = Some((num, direct));
            }
            Atom::Src(c) => {
                t.fams = c.fam();
                t.src = Some(c);
            }
            Atom::Dst(c) => {
                t.fams = c.fam();
                t.dst = Some(c);
            }
            Atom::SrcPorts(a, b) => t.sport = Some((a, b)),
            Atom::DstPorts(a, b) => t.dport = Some((a, b)),
        }
        t
    }

    /// Both at once; `None` when no packet can be both.
    fn and(&self, o: &Term) -> Option<Term> {
        let mut fams = self.fams & o.fams;
        let proto = match (self.proto, o.proto) {
            (None, p) | (p, None) => p,
            (Some((p, dp)), Some((q, dq))) if p == q => Some((p, dp || dq)),
            // IPv4 has one protocol field, but libpcap's IPv6 `ip6 proto 44` and `tcp`
            // both match a fragment header followed by TCP.
            (Some((IPV6_FRAGMENT, false)), Some((r, false)))
            | (Some((r, false)), Some((IPV6_FRAGMENT, false))) => {
                fams &= V6;
                Some((r, false))
            }
            _ => return None,
        };
        let src = Cidr::intersect(self.src, o.src)?;
        let dst = Cidr::intersect(self.dst, o.dst)?;
        for c in src.iter().chain(dst.iter()) {
            fams &= c.fam();
        }
        let sport = intersect_range(self.sport, o.sport)?;
        let dport = intersect_range(self.dport, o.dport)?;
        (fams != 0).then_some(Term {
            fams,
            proto,
            src,
            dst,
            sport,
            dport,
        })
    }

    /// Every packet `o` describes, `self` describes too.
    fn covers(&self, o: &Term) -> bool {
        let proto = match (self.proto, o.proto) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((p, dp)), Some((q, dq))) => p == q && (!dp || dq),
        };
        let net = |a: Option<Cidr>, b: Option<Cidr>| match (a, b) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a.covers(&b),
        };
        o.fams & !self.fams == 0
            && proto
            && net(self.src, o.src)
            && net(self.dst, o.dst)
            && range_covers(self.sport, o.sport)
            && range_covers(self.dport, o.dport)
    }

    fn push_rules(&self, out: &mut Vec<Rule>) {
        for (fam, v6) in [(V4, false), (V6, true)] {
            if self.fams & fam == 0 {
                continue;
            }
            let protos = match self.proto {
                None => vec![None],
                Some((p, direct)) if !v6 || direct => vec![Some(p)],
                Some((p, _)) if IPV6_EXTENSIONS.contains(&p) => vec![None],
                // Whether AWS reads the fixed header's next header (44 for a fragment) or
                // the protocol after it is undocumented: a rule for each reading.
                Some((p, _)) => vec![Some(p), Some(IPV6_FRAGMENT)],
            };
            for protocol in protos {
                let ports = matches!(protocol, Some(6 | 17));
                out.push(Rule {
                    action: Action::Accept,
                    protocol,
                    source: self.src.unwrap_or(Cidr::any(v6)),
                    destination: self.dst.unwrap_or(Cidr::any(v6)),
                    source_ports: self.sport.filter(|_| ports),
                    destination_ports: self.dport.filter(|_| ports),
                    description: String::new(),
                });
            }
        }
    }
}

fn intersect_range(a: Option<(u16, u16)>, b: Option<(u16, u16)>) -> Option<Option<(u16, u16)>> {
    match (a, b) {
        (None, x) | (x, None) => Some(x),
        (Some(a), Some(b)) => {
            let r = (a.0.max(b.0), a.1.min(b.1));
            (r.0 <= r.1).then_some(Some(r))
        }
    }
}

/// Sorted, without duplicates or terms another one covers.
fn prune(terms: &mut Vec<Term>) {
    terms.sort();
    terms.dedup();
    let mut keep = vec![true; terms.len()];
    for i in 0..terms.len() {
        for j in 0..terms.len() {
            if i != j && keep[j] && terms[j].covers(&terms[i]) {
                keep[i] = false;
                break;
            }
        }
    }
    let mut k = keep.iter();
    terms.retain(|_| *k.next().unwrap_or(&true));
}

/// `None` when the expansion outgrows its bounds.
fn dnf(e: &Expr, depth: usize) -> Option<Vec<Term>> {
    if depth > MAX_TOKENS {
        return None;
    }
    let mut out = match e {
        Expr::Any => vec![Term::ANY],
        Expr::Atom(a) => vec![Term::of(*a)],
        Expr::Or(v) => {
            let mut out = Vec::new();
            for x in v {
                out.extend(dnf(x, depth + 1)?);
                if out.len() > MAX_PRODUCT {
                    return None;
                }
            }
            out
        }
        Expr::And(v) => {
            let mut acc = vec![Term::ANY];
            for x in v {
                let rhs = dnf(x, depth + 1)?;
                if acc.len() * rhs.len() > MAX_PRODUCT {
                    return None;
                }
                acc = acc
                    .iter()
                    .flat_map(|a| rhs.iter().filter_map(move |b| a.and(b)))
                    .collect();
                prune(&mut acc);
                if acc.len() > MAX_TERMS {
                    return None;
                }
            }
            acc
        }
    };
    prune(&mut out);
    (out.len() <= MAX_TERMS).then_some(out)
}

// ---------------------------------------------------------------------------------------
// Rules: simplification and widening.

/// Removes duplicates and covered rules, and merges pairs whose union is a rule.
fn simplify(rules: &mut Vec<Rule>) {
    rules.sort_by_key(Rule::sort_key);
    rules.dedup();
    let mut keep = vec![true; rules.len()];
    for i in 0..rules.len() {
        for j in 0..rules.len() {
            if i != j && keep[j] && rules[j].covers(&rules[i]) {
                keep[i] = false;
                break;
            }
        }
    }
    let mut k = keep.iter();
    rules.retain(|_| *k.next().unwrap_or(&true));
    if rules.len() > MAX_PAIRWISE {
        return;
    }
    'again: loop {
        for i in 0..rules.len() {
            for j in i + 1..rules.len() {
                if let Some(m) = exact_union(&rules[i], &rules[j]) {
                    rules.swap_remove(j);
                    rules.swap_remove(i);
                    rules.retain(|r| !m.covers(r));
                    rules.push(m);
                    continue 'again;
                }
            }
        }
        break;
    }
}

/// The rule matching exactly what `a` or `b` matches, when there is one: ranges that touch,
/// or sibling blocks.
fn exact_union(a: &Rule, b: &Rule) -> Option<Rule> {
    if a.is_ipv6() != b.is_ipv6() || a.protocol != b.protocol {
        return None;
    }
    let touching = |x: Option<(u16, u16)>, y: Option<(u16, u16)>| match (x, y) {
        (Some(x), Some(y))
            if u32::from(x.0) <= u32::from(y.1) + 1 && u32::from(y.0) <= u32::from(x.1) + 1 =>
        {
            Some((x.0.min(y.0), x.1.max(y.1)))
        }
        _ => None,
    };
    let siblings = |x: Cidr, y: Cidr| {
        (x.prefix == y.prefix && x.prefix > 0 && x != y && x.join(&y).prefix == x.prefix - 1)
            .then(|| x.join(&y))
    };
    let mut m = a.clone();
    let same_nets = a.source == b.source && a.destination == b.destination;
    let same_ports = a.source_ports == b.source_ports && a.destination_ports == b.destination_ports;
    if same_nets && a.destination_ports == b.destination_ports {
        m.source_ports = Some(touching(a.source_ports, b.source_ports)?);
    } else if same_nets && a.source_ports == b.source_ports {
        m.destination_ports = Some(touching(a.destination_ports, b.destination_ports)?);
    } else if same_ports && a.destination == b.destination {
        m.source = siblings(a.source, b.source)?;
    } else if same_ports && a.source == b.source {
        m.destination = siblings(a.destination, b.destination)?;
    } else {
        return None;
    }
    Some(m)
}

#[derive(Default)]
struct Lost {
    ports: bool,
    addresses: bool,
    protocols: bool,
}

impl Lost {
    fn record(&mut self, from: &Rule, to: &Rule) {
        self.ports |= (from.has_ports() && !to.has_ports())
            || range_size(from.source_ports) < range_size(to.source_ports)
            || range_size(from.destination_ports) < range_size(to.destination_ports);
        self.addresses |= from.source.prefix > to.source.prefix
            || from.destination.prefix > to.destination.prefix;
        self.protocols |= from.protocol.is_some() && to.protocol.is_none();
    }
}

/// What a join gives up: protocols weigh most, then address bits, then ports.
fn join_cost(a: &Rule, b: &Rule, j: &Rule) -> (u32, u32, u64) {
    let mut cost = (0, 0, 0);
    for r in [a, b] {
        cost.0 += u32::from(r.protocol.is_some() && j.protocol.is_none());
        cost.1 += u32::from(r.source.prefix - j.source.prefix)
            + u32::from(r.destination.prefix - j.destination.prefix);
        cost.2 += range_size(j.source_ports) - range_size(r.source_ports)
            + range_size(j.destination_ports)
            - range_size(r.destination_ports);
    }
    cost
}

/// Widens `rules` until at most `budget` remain, each step the cheapest join of two rules
/// of one family. Every step only adds packets, so the result is still a superset.
fn widen(rules: &mut Vec<Rule>, budget: usize, notes: &mut Notes) -> Result<(), BudgetTooSmall> {
    let needed = rules.len();
    if needed <= budget {
        return Ok(());
    }
    let mut lost = Lost::default();
    // Coarse passes first, so the pairwise search below stays small.
    let passes: [fn(&mut Rule); 3] = [
        |r| {
            r.source_ports = None;
            r.destination_ports = None;
        },
        |r| r.protocol = None,
        |r| {
            r.source = Cidr::any(r.is_ipv6());
            r.destination = Cidr::any(r.is_ipv6());
        },
    ];
    for pass in passes {
        if rules.len() <= MAX_PAIRWISE {
            break;
        }
        for r in rules.iter_mut() {
            let before = r.clone();
            pass(r);
            lost.record(&before, r);
        }
        simplify(rules);
    }
    while rules.len() > budget {
        // Ties go to the same protocol in both families first, for symmetric results.
        rules.sort_by_key(|r| (r.protocol, r.sort_key()));
        let mut best = None;
        for i in 0..rules.len() {
            for j in i + 1..rules.len() {
                if rules[i].is_ipv6() != rules[j].is_ipv6() {
                    continue;
                }
                let cost = join_cost(&rules[i], &rules[j], &rules[i].join(&rules[j]));
                if best.is_none_or(|(c, _, _)| cost < c) {
                    best = Some((cost, i, j));
                }
            }
        }
        let Some((_, i, j)) = best else {
            break;
        };
        let joined = rules[i].join(&rules[j]);
        lost.record(&rules[i], &joined);
        lost.record(&rules[j], &joined);
        rules.swap_remove(j);
        rules.swap_remove(i);
        rules.retain(|r| !joined.covers(r));
        rules.push(joined);
    }
    if rules.len() > budget {
        let needed = rules.len();
        rules.clear();
        return Err(BudgetTooSmall { needed, budget });
    }
    let what: Vec<&str> = [
        (lost.ports, "port ranges"),
        (lost.addresses, "address blocks"),
        (lost.protocols, "protocols"),
    ]
    .iter()
    .filter(|(l, _)| *l)
    .map(|(_, w)| *w)
    .collect();
    notes.push(format!(
        "The filter needs {needed} mirror rules per direction but {budget} are free: widened {} (AWS mirrors more; awsvpc still filters exactly).",
        if what.is_empty() { "rules".to_string() } else { what.join(", ") }
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// An evaluator of AWS's documented rule semantics.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tri {
    No,
    Maybe,
    Yes,
}

impl From<bool> for Tri {
    fn from(b: bool) -> Self {
        if b {
            Tri::Yes
        } else {
            Tri::No
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    /// Not TCP/UDP, or a fragment after the first: AWS has no ports to match.
    Absent,
    /// Source and destination port, `None` where the capture stops short of it.
    Present(Option<u16>, Option<u16>),
}

/// An address as far as the capture holds it (libpcap compares a prefix's words only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Partial {
    bytes: [u8; 16],
    known: usize,
}

impl Partial {
    fn at(ip: &[u8], at: usize, width: usize) -> Self {
        let have = ip.get(at..).unwrap_or(&[]);
        let known = have.len().min(width);
        let mut bytes = [0u8; 16];
        bytes[..known].copy_from_slice(&have[..known]);
        Partial { bytes, known }
    }

    fn within(&self, c: &Cidr) -> Tri {
        let v6 = !c.is_ipv4();
        let value = if v6 {
            u128::from_be_bytes(self.bytes)
        } else {
            u128::from(u32::from_be_bytes([
                self.bytes[0],
                self.bytes[1],
                self.bytes[2],
                self.bytes[3],
            ]))
        };
        let known_bits = u8::try_from(self.known * 8).unwrap_or(u8::MAX);
        let m = mask(v6, c.prefix.min(known_bits));
        if value & m != bits(c.addr) & m {
            Tri::No
        } else if c.prefix <= known_bits {
            Tri::Yes
        } else {
            Tri::Maybe
        }
    }
}

/// A packet's fields as AWS reads them, as far as the captured bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    v6: bool,
    src: Partial,
    dst: Partial,
    protocol: Option<u8>,
    ports: Ports,
}

/// Whether AWS mirrors this Ethernet frame under `rules` (one direction's list, in rule
/// number order: the first rule that matches decides; none matching means not mirrored).
///
/// Conservative wherever AWS's behaviour is not documented, so a superset check against it
/// holds whatever AWS really does: a field cut off by truncation matches only "any", a
/// reject rule that might match rejects, and an IPv6 packet with extension headers must be
/// mirrored both when AWS takes the fixed header's next header as its protocol and when
/// it takes the protocol after the extension headers; a frame cut before its EtherType
/// must be mirrored as IPv4 and as IPv6. Frames without IP are not mirrored.
pub fn aws_mirrors(rules: &[Rule], frame: &[u8]) -> bool {
    let views = views(frame);
    !views.is_empty() && views.iter().all(|v| decide(rules, v))
}

fn decide(rules: &[Rule], v: &View) -> bool {
    for r in rules {
        match (r.action, rule_matches(r, v)) {
            (Action::Accept, Tri::Yes) => return true,
            (Action::Reject, Tri::Yes | Tri::Maybe) => return false,
            _ => {}
        }
    }
    false
}

fn rule_matches(r: &Rule, v: &View) -> Tri {
    if r.source.is_ipv4() == v.v6 || r.destination.is_ipv4() == v.v6 {
        return Tri::No;
    }
    let mut m = v.src.within(&r.source).min(v.dst.within(&r.destination));
    if let Some(p) = r.protocol {
        m = m.min(v.protocol.map_or(Tri::Maybe, |x| Tri::from(x == p)));
    }
    if r.has_ports() {
        if !matches!(r.protocol, Some(6 | 17)) {
            return Tri::No;
        }
        let side = |p: Option<u16>, range: Option<(u16, u16)>| match (range, p) {
            (None, _) => Tri::Yes,
            (Some((a, b)), Some(p)) => Tri::from((a..=b).contains(&p)),
            (Some(_), None) => Tri::Maybe,
        };
        m = m.min(match v.ports {
            Ports::Present(s, d) => side(s, r.source_ports).min(side(d, r.destination_ports)),
            Ports::Absent => Tri::No,
        });
    }
    m
}

fn be16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn ports_at(b: &[u8], at: usize) -> Ports {
    Ports::Present(be16_at(b, at), be16_at(b, at + 2))
}

const NO_PORTS_YET: Ports = Ports::Present(None, None);

/// The packet's readings: two for IPv6 with extension headers, none without IP.
fn views(frame: &[u8]) -> Vec<View> {
    let Some((ethertype, off)) = Frame::new_checked(frame).ok().and_then(|f| f.l3()) else {
        // Cut inside the Ethernet header or its tags: it may have been either IP.
        return [false, true]
            .map(|v6| View {
                v6,
                src: Partial::at(&[], 0, 0),
                dst: Partial::at(&[], 0, 0),
                protocol: None,
                ports: NO_PORTS_YET,
            })
            .to_vec();
    };
    let ip = frame.get(off..).unwrap_or(&[]);
    match ethertype {
        ETHERTYPE_IPV4 => {
            let protocol = ip.get(9).copied();
            let ports = match protocol {
                None => NO_PORTS_YET,
                Some(6 | 17) => match (be16_at(ip, 6), ip.first()) {
                    (Some(frag), _) if frag & 0x1fff != 0 => Ports::Absent,
                    (Some(_), Some(b0)) if usize::from(b0 & 0x0f) >= 5 => {
                        ports_at(ip, usize::from(b0 & 0x0f) * 4)
                    }
                    _ => NO_PORTS_YET,
                },
                Some(_) => Ports::Absent,
            };
            vec![View {
                v6: false,
                src: Partial::at(ip, 12, 4),
                dst: Partial::at(ip, 16, 4),
                protocol,
                ports,
            }]
        }
        ETHERTYPE_IPV6 => {
            let next = ip.get(6).copied();
            let fixed = View {
                v6: true,
                src: Partial::at(ip, 8, 16),
                dst: Partial::at(ip, 24, 16),
                protocol: next,
                ports: match next {
                    None => NO_PORTS_YET,
                    Some(6 | 17) => ports_at(ip, 40),
                    Some(_) => Ports::Absent,
                },
            };
            let (protocol, ports) = past_extensions(ip, next);
            let upper = View {
                protocol,
                ports,
                ..fixed
            };
            if upper == fixed {
                vec![fixed]
            } else {
                vec![fixed, upper]
            }
        }
        _ => Vec::new(),
    }
}

/// The protocol after IPv6 extension headers, and its ports.
fn past_extensions(ip: &[u8], mut next: Option<u8>) -> (Option<u8>, Ports) {
    let mut off = 40usize;
    for _ in 0..8 {
        let Some(h) = next else {
            return (None, NO_PORTS_YET);
        };
        if !IPV6_EXTENSIONS.contains(&h) {
            return match h {
                6 | 17 => (Some(h), ports_at(ip, off)),
                _ => (Some(h), Ports::Absent),
            };
        }
        let after = ip.get(off).copied();
        let len = match h {
            IPV6_FRAGMENT => match be16_at(ip, off + 2) {
                // Nothing after a later fragment's header is a header.
                Some(fo) if fo & 0xfff8 != 0 => return (after, Ports::Absent),
                Some(_) => Some(8),
                None => None,
            },
            51 => ip.get(off + 1).map(|l| (usize::from(*l) + 2) * 4),
            _ => ip.get(off + 1).map(|l| (usize::from(*l) + 1) * 8),
        };
        match len {
            Some(len) => {
                next = after;
                off += len;
            }
            // Cut inside this header: its next header may still name the protocol.
            None => {
                return match after {
                    Some(n @ (6 | 17)) => (Some(n), NO_PORTS_YET),
                    Some(n) if !IPV6_EXTENSIONS.contains(&n) => (Some(n), Ports::Absent),
                    _ => (None, NO_PORTS_YET),
                }
            }
        }
    }
    (None, NO_PORTS_YET)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(f: &str, budget: usize) -> Narrowing {
        narrow(Some(f), budget).unwrap_or_else(|e| panic!("{f}: {e}"))
    }

    fn shown(n: &Narrowing) -> Vec<String> {
        n.rules.iter().map(Rule::to_string).collect()
    }

    fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(l4);
        f
    }

    fn v6(next: u8, last: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 0, next, 64]);
        let mut a = [0u8; 16];
        a[0] = 0x20;
        a[1] = 0x01;
        a[15] = 1;
        f.extend_from_slice(&a);
        a[15] = last;
        f.extend_from_slice(&a);
        f.extend_from_slice(l4);
        f
    }

    const TCP_80_TO_443: [u8; 4] = [0, 80, 1, 187];

    #[test]
    fn ports_become_tcp_and_udp_rules_per_family() {
        let n = ok("tcp port 80", 10);
        assert_eq!(
            shown(&n),
            [
                "accept tcp from 0.0.0.0/0 to 0.0.0.0/0 port 80",
                "accept tcp from 0.0.0.0/0 port 80 to 0.0.0.0/0",
                "accept tcp from ::/0 to ::/0 port 80",
                "accept tcp from ::/0 port 80 to ::/0",
            ]
        );
        assert!(n.notes.is_empty() && !n.accept_all, "{:?}", n.notes);
        // Like libpcap, a bare `port` also means UDP and SCTP (whose ports rules cannot hold).
        let n = ok("port 53", 10);
        assert_eq!(n.rules.len(), 10, "{:#?}", shown(&n));
        assert!(n
            .rules
            .iter()
            .any(|r| r.protocol == Some(132) && !r.has_ports()));
    }

    #[test]
    fn hosts_nets_and_inherited_qualifiers() {
        let n = ok("host 10.0.0.1 or 10.0.0.2", 10);
        assert_eq!(n.rules.len(), 4);
        assert!(n.rules.iter().all(|r| !r.is_ipv6() && r.protocol.is_none()));
        let n = ok(
            "src net 10.0.0.0 mask 255.0.255.0 and dst host 2001:db8::1",
            10,
        );
        assert!(n.rules.is_empty(), "an IPv4 source and an IPv6 destination");
        assert_eq!(
            shown(&ok("src net 10.0.0.0 mask 255.0.255.0", 10)),
            ["accept all from 10.0.0.0/8 to 0.0.0.0/0"]
        );
        assert_eq!(
            shown(&ok("dst host 10.1", 10)),
            ["accept all from 0.0.0.0/0 to 10.1.0.0/16"]
        );
        assert_eq!(
            // (ip6 src net … and udp dst port 53) or udp dst port 5353
            shown(&ok(
                "ip6 src net 2001:db8::/32 and udp dst port 53 or 5353",
                10
            )),
            [
                "accept udp from 0.0.0.0/0 to 0.0.0.0/0 port 5353",
                "accept udp from ::/0 to ::/0 port 5353",
                "accept udp from 2001:db8::/32 to ::/0 port 53",
            ]
        );
        assert_eq!(
            shown(&ok(
                "host (10.0.0.1 or 10.0.0.3) and tcp portrange 1000-990",
                10
            ))
            .len(),
            8
        );
        assert_eq!(
            shown(&ok("src 192.0.2.1 and ip proto \\udp", 10)),
            ["accept udp from 192.0.2.1/32 to 0.0.0.0/0"]
        );
    }

    #[test]
    fn and_or_have_equal_precedence_left_to_right() {
        // (host a or host b) and tcp, as libpcap reads it.
        let n = ok("host 10.0.0.1 or host 10.0.0.2 and tcp", 10);
        assert!(
            n.rules.iter().all(|r| r.protocol == Some(6)),
            "{:?}",
            shown(&n)
        );
    }

    #[test]
    fn ipv6_protocols_cover_fragment_headers() {
        assert_eq!(
            shown(&ok("icmp6", 10)),
            [
                "accept proto 44 from ::/0 to ::/0",
                "accept icmp6 from ::/0 to ::/0"
            ]
        );
        assert_eq!(
            shown(&ok("ip6 proto 0", 10)),
            ["accept all from ::/0 to ::/0"]
        );
        // libpcap: a fragment header (44) followed by TCP.
        assert_eq!(
            shown(&ok("ip6 proto 44 and tcp", 10)),
            [
                "accept tcp from ::/0 to ::/0",
                "accept proto 44 from ::/0 to ::/0"
            ]
        );
        assert!(ok("tcp and udp", 10).rules.is_empty());
    }

    #[test]
    fn unknown_parts_and_negations_mirror_everything_and_say_so() {
        for f in [
            "not port 22",
            "greater 100",
            "ether host 02:00:00:00:00:01",
            "arp",
        ] {
            let n = ok(f, 10);
            assert!(n.accept_all, "{f}");
            assert_eq!(n.rules.len(), 2, "{f}");
            assert!(
                n.notes.iter().any(|s| s.contains('`')),
                "{f}: {:?}",
                n.notes
            );
        }
        let n = ok("vlan and host 10.0.0.1", 10);
        assert!(n.accept_all && n.notes[0].contains("vlan"), "{:?}", n.notes);
        let n = ok("tcp and not port 22", 10);
        assert_eq!(n.rules.len(), 3, "tcp stays: {:?}", shown(&n));
        // A load narrows to its protocol, IPv4 only.
        assert_eq!(
            shown(&ok("tcp[tcpflags] & tcp-syn != 0", 10)),
            ["accept tcp from 0.0.0.0/0 to 0.0.0.0/0"]
        );
        assert!(ok("", 10).accept_all && narrow(None, 2).unwrap().accept_all);
        assert!(ok("host 10.0.0.1 port 80", 10).accept_all, "syntax error");
    }

    #[test]
    fn widening_fits_the_budget_and_stays_a_superset() {
        let frames = [
            v4([10, 0, 0, 9], [192, 0, 2, 1], 17, &[0, 53, 0x30, 0x39]),
            v4([10, 0, 0, 9], [192, 0, 2, 1], 6, &[0x30, 0x39, 0, 53]),
            v4([10, 0, 0, 9], [192, 0, 2, 1], 132, &[0x30, 0x39, 0, 53]),
            v6(17, 2, &[0, 53, 0, 53]),
        ];
        for budget in [10, 8, 6, 4, 2] {
            let n = ok("port 53", budget);
            assert!(n.rules.len() <= budget);
            assert_eq!(n.notes.is_empty(), budget == 10, "{budget}: {:?}", n.notes);
            for f in &frames {
                assert!(aws_mirrors(&n.rules, f), "{budget}: {:?}", shown(&n));
            }
        }
        assert_eq!(
            narrow(Some("tcp"), 1),
            Err(BudgetTooSmall {
                needed: 2,
                budget: 1
            })
        );
        assert_eq!(
            shown(&ok("host 10.0.0.1", 1)),
            ["accept all from 0.0.0.0/0 to 0.0.0.0/0"]
        );
        assert_eq!(
            narrow(Some("icmp and udp"), 0).map(|n| n.rules.len()),
            Ok(0)
        );
    }

    #[test]
    fn exact_unions_merge() {
        assert_eq!(
            shown(&ok(
                "tcp dst portrange 1-100 or tcp dst portrange 101-200",
                10
            )),
            [
                "accept tcp from 0.0.0.0/0 to 0.0.0.0/0 ports 1-200",
                "accept tcp from ::/0 to ::/0 ports 1-200",
            ]
        );
        assert_eq!(
            shown(&ok("src net 10.0.0.0/25 or src net 10.0.0.128/25", 10)),
            ["accept all from 10.0.0.0/24 to 0.0.0.0/0"]
        );
    }

    #[test]
    fn evaluator_follows_rule_order_and_fragments() {
        let syn = v4([10, 0, 0, 9], [192, 0, 2, 1], 6, &TCP_80_TO_443);
        let mut reject = Rule::accept_all(false);
        reject.action = Action::Reject;
        reject.destination = Cidr::new("192.0.2.0".parse().unwrap(), 24);
        let all = Rule::accept_all(false);
        assert!(aws_mirrors(std::slice::from_ref(&all), &syn));
        assert!(!aws_mirrors(&[reject.clone(), all.clone()], &syn));
        assert!(aws_mirrors(&[all.clone(), reject], &syn));
        let mut port = all.clone();
        port.protocol = Some(6);
        port.destination_ports = Some((443, 443));
        assert!(aws_mirrors(std::slice::from_ref(&port), &syn));
        let mut later = syn.clone();
        later[20] = 0x01; // fragment offset 256 bytes: no TCP header
        assert!(!aws_mirrors(std::slice::from_ref(&port), &later));
        // Cut before the ports: only a rule without ports decides.
        assert!(!aws_mirrors(std::slice::from_ref(&port), &syn[..36]));
        assert!(aws_mirrors(&[all], &syn[..20]));
        // ARP carries no IP.
        let mut arp = syn.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!aws_mirrors(&[Rule::accept_all(false)], &arp));
        // IPv6 behind a fragment header: both readings need a rule.
        let mut frag = vec![6, 0, 0, 0, 0, 0, 0, 1];
        frag.extend_from_slice(&TCP_80_TO_443);
        let f = v6(44, 2, &frag);
        let mut tcp6 = Rule::accept_all(true);
        tcp6.protocol = Some(6);
        assert!(!aws_mirrors(std::slice::from_ref(&tcp6), &f));
        let mut frag6 = tcp6.clone();
        frag6.protocol = Some(44);
        assert!(aws_mirrors(&[tcp6, frag6], &f));
    }

    #[test]
    fn hostile_input_neither_panics_nor_explodes() {
        let deep = format!("{}tcp{}", "(".repeat(5000), ")".repeat(5000));
        let long = ["port 1"; 300].join(" or ");
        let wide = ["(port 1 or port 2 or port 3)"; 12].join(" and ");
        for f in [
            deep.as_str(),
            &long,
            &wide,
            "((",
            ")",
            "not",
            "host",
            "src or",
            "net 1.2.3.4/99",
            "\u{0}é ! && ||",
            "port 99999",
            "proto \\",
            "host ::1/200",
            "net 4294967295",
            "net 0x",
            "portrange -",
        ] {
            for budget in [0, 1, 2, 10] {
                if let Ok(n) = narrow(Some(f), budget) {
                    assert!(n.rules.len() <= budget, "{f}");
                    assert!(n.notes.len() <= MAX_NOTES + 1);
                }
            }
        }
    }
}
