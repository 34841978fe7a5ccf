//! Capture filters in libpcap syntax, compiled by libpcap itself and applied to the
//! decapsulated Ethernet frames (dumpcap does not filter pipes, so awsvpc must). How
//! libpcap is reached differs by OS: `crate::sys::bpf`.

use crate::sys::bpf::Program;

pub struct CaptureFilter {
    expression: String,
    program: Program,
}

impl std::fmt::Debug for CaptureFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaptureFilter({:?})", self.expression)
    }
}

impl CaptureFilter {
    /// Compiles `expression` for Ethernet frames. The error is libpcap's own explanation
    /// (or, where libpcap is missing, the sentence saying how to get it).
    pub fn compile(expression: &str) -> Result<Self, String> {
        let program = Program::compile(expression)?;
        Ok(CaptureFilter {
            expression: expression.to_string(),
            program,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The program in `tcpdump -ddd`'s form with commas for line breaks ("n,code jt jf
    /// k,…"): what the on-host relay attaches to its packet socket (SO_ATTACH_FILTER), so
    /// that only matching frames leave the instance.
    pub fn classic_bpf(&self) -> String {
        let insns = self.program.instructions();
        let mut s = insns.len().to_string();
        for (code, jt, jf, k) in insns {
            s.push_str(&format!(",{code} {jt} {jf} {k}"));
        }
        s
    }

    /// True when the frame passes. `wire_len` is the frame's original length.
    #[inline]
    pub fn matches(&self, frame: &[u8], wire_len: usize) -> bool {
        self.program.matches(frame, wire_len)
    }
}

/// Compiles an optional filter: empty or whitespace means none.
pub fn compile_optional(expression: Option<&str>) -> Result<Option<CaptureFilter>, String> {
    match expression.map(str::trim) {
        None | Some("") => Ok(None),
        Some(e) => CaptureFilter::compile(e).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_frame() -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
        ]);
        f.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0, 0]);
        f
    }

    #[test]
    fn filters_by_port_and_wire_length() {
        let f = udp_frame();
        assert!(CaptureFilter::compile("udp port 53")
            .unwrap()
            .matches(&f, f.len()));
        assert!(!CaptureFilter::compile("tcp").unwrap().matches(&f, f.len()));
        let big = CaptureFilter::compile("greater 1000").unwrap();
        assert!(!big.matches(&f, f.len()));
        assert!(
            big.matches(&f, 1514),
            "greater must see the original length"
        );
    }

    #[test]
    fn explains_bad_filters() {
        let e = CaptureFilter::compile("port 99999").unwrap_err();
        assert!(e.contains("port"), "{e}");
        assert!(CaptureFilter::compile("bogus filter").is_err());
        assert!(compile_optional(Some("  ")).unwrap().is_none());
    }

    #[test]
    fn classic_bpf_is_tcpdump_ddd_with_commas() {
        let f = CaptureFilter::compile("udp").unwrap();
        let p = f.classic_bpf();
        let parts: Vec<&str> = p.split(',').collect();
        assert_eq!(parts[0].parse::<usize>().unwrap(), parts.len() - 1);
        // `ldh [12]` first: the EtherType, as tcpdump -ddd prints it.
        assert_eq!(parts[1], "40 0 0 12");
        assert!(parts[1..].iter().all(|l| l.split(' ').count() == 4));
    }
}
