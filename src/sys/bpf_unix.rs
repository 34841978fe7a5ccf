//! libpcap on Unix, linked (the pcap crate): `pcap_compile` on a dead Ethernet handle, and
//! libpcap's own interpreter to run the program.

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

/// A compiled capture filter.
pub struct Program(BpfProgram);

// The compiled program is plain immutable data owned by this value.
unsafe impl Send for Program {}

impl Program {
    /// Compiles `expression` for Ethernet frames; the error is libpcap's explanation.
    pub fn compile(expression: &str) -> Result<Self, String> {
        let dead = Capture::dead(Linktype::ETHERNET).map_err(|e| e.to_string())?;
        let program = dead.compile(expression, true).map_err(|e| match e {
            pcap::Error::PcapError(m) => m,
            other => other.to_string(),
        })?;
        if program.get_instructions().is_empty() {
            return Err("libpcap produced an empty program".into());
        }
        Ok(Program(program))
    }

    /// The program as (code, jt, jf, k), for a kernel elsewhere to run (the on-host relay).
    pub fn instructions(&self) -> Vec<(u16, u8, u8, u32)> {
        let insns = self.0.get_instructions();
        // SAFETY: as in `matches`: BpfInstruction is repr(transparent) over bpf_insn.
        let raw =
            unsafe { std::slice::from_raw_parts(insns.as_ptr() as *const BpfInsn, insns.len()) };
        raw.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
    }

    /// True when the frame passes. `wire_len` is the frame's original length.
    #[inline]
    pub fn matches(&self, frame: &[u8], wire_len: usize) -> bool {
        let insns = self.0.get_instructions();
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
