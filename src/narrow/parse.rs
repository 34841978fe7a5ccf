//! libpcap's capture-filter syntax, as far as traffic-mirror rules can express it: tokens,
//! qualifiers and a recursive-descent parser into `Expr`, bounded in depth and length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::rule::Cidr;
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum K {
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
pub(super) struct Tok<'a> {
    pub(super) kind: K,
    pub(super) text: &'a str,
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-' | b'\\')
}

pub(super) fn tokenize(s: &str) -> Vec<Tok<'_>> {
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
pub(super) enum Atom {
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
pub(super) enum Expr {
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
pub(super) struct Qual {
    pq: Pq,
    dir: Dir,
    kind: Kind,
}

pub(super) type PResult<T> = Result<T, String>;

pub(super) struct Parser<'a, 'n> {
    pub(super) toks: Vec<Tok<'a>>,
    pub(super) pos: usize,
    /// The qualifiers a bare id would inherit; `None` where we are not sure which libpcap
    /// would use (a bare id then reads as any packet).
    pub(super) last: Option<Qual>,
    pub(super) depth: usize,
    pub(super) notes: &'n mut Notes,
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
    pub(super) fn expr(&mut self) -> PResult<Expr> {
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
