//! Capture filters in libpcap syntax, compiled by libpcap itself and applied to the
//! decapsulated Ethernet frames (dumpcap does not filter pipes, so awsvpc must).

use pcap::{BpfProgram, Capture, Linktype};

/// libpcap's `struct bpf_insn`; `pcap::BpfInstruction` is a transparent wrapper of it.
#[repr(C)]
struct BpfInsn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[link(name = "pcap")]
extern "C" {
    // libpcap's interpreter; unlike pcap_offline_filter it takes the wire length separately,
    // so `greater`/`less` see a truncated frame's original length.
    fn bpf_filter(pc: *const BpfInsn, p: *const u8, wirelen: u32, buflen: u32) -> u32;
}

pub struct CaptureFilter {
    expression: String,
    program: BpfProgram,
}

impl std::fmt::Debug for CaptureFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaptureFilter({:?})", self.expression)
    }
}

// The compiled program is plain immutable data owned by this value.
unsafe impl Send for CaptureFilter {}

impl CaptureFilter {
    /// Compiles `expression` for Ethernet frames. The error is libpcap's own explanation.
    pub fn compile(expression: &str) -> Result<Self, String> {
        let dead = Capture::dead(Linktype::ETHERNET).map_err(|e| e.to_string())?;
        let program = dead.compile(expression, true).map_err(|e| match e {
            pcap::Error::PcapError(m) => m,
            other => other.to_string(),
        })?;
        if program.get_instructions().is_empty() {
            return Err("libpcap produced an empty program".into());
        }
        Ok(CaptureFilter {
            expression: expression.to_string(),
            program,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// True when the frame passes. `wire_len` is the frame's original length.
    #[inline]
    pub fn matches(&self, frame: &[u8], wire_len: usize) -> bool {
        let insns = self.program.get_instructions();
        // SAFETY: BpfInstruction is repr(transparent) over libpcap's bpf_insn, which BpfInsn
        // mirrors; the program is non-empty and validated by pcap_compile; libpcap's
        // interpreter bounds every load by `buflen`.
        unsafe {
            bpf_filter(
                insns.as_ptr() as *const BpfInsn,
                frame.as_ptr(),
                wire_len.max(frame.len()).min(u32::MAX as usize) as u32,
                frame.len().min(u32::MAX as usize) as u32,
            ) != 0
        }
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
}
