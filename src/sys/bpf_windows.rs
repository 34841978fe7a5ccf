//! libpcap on Windows: Npcap's `wpcap.dll` (Wireshark's installer offers Npcap), loaded at
//! the first capture filter rather than linked, so that a machine without Npcap still runs
//! every query call and every capture without a filter; with a filter it gets one sentence
//! saying to install Npcap.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::OnceLock;

#[repr(C)]
#[derive(Clone, Copy)]
struct BpfInsn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut BpfInsn,
}

const DLT_EN10MB: c_int = 1;
const PCAP_NETMASK_UNKNOWN: u32 = 0xffff_ffff;
/// `LoadLibraryEx`'s flag that resolves wpcap.dll's own dependency (Packet.dll) from its
/// folder.
const LOAD_WITH_ALTERED_SEARCH_PATH: u32 = 0x8;

const NO_NPCAP: &str = "Capture filters on Windows need Npcap's wpcap.dll, which is missing or does not work here; install Npcap (https://npcap.com, offered by Wireshark's installer) or capture without a capture filter.";

struct Wpcap {
    open_dead: unsafe extern "C" fn(c_int, c_int) -> *mut c_void,
    compile: unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, u32) -> c_int,
    geterr: unsafe extern "C" fn(*mut c_void) -> *const c_char,
    freecode: unsafe extern "C" fn(*mut BpfProgram),
    close: unsafe extern "C" fn(*mut c_void),
    filter: unsafe extern "C" fn(*const BpfInsn, *const u8, c_uint, c_uint) -> c_uint,
    /// Kept loaded for the process's life: the function pointers above point into it.
    _lib: libloading::Library,
}

fn load() -> Result<Wpcap, String> {
    let system = std::env::var_os("SystemRoot").unwrap_or_else(|| r"C:\Windows".into());
    let npcap = std::path::Path::new(&system).join(r"System32\Npcap\wpcap.dll");
    // Only Npcap's own folder: a wpcap.dll elsewhere on the search path may be WinPcap's
    // (unmaintained since 2013) or a stub whose functions abort the process (Wine's).
    // SAFETY: loading wpcap.dll runs its initialisation, which is Npcap's.
    let lib = unsafe {
        libloading::os::windows::Library::load_with_flags(&npcap, LOAD_WITH_ALTERED_SEARCH_PATH)
    }
    .map_err(|_| NO_NPCAP.to_string())?;
    let lib = libloading::Library::from(lib);
    // SAFETY: the signatures are libpcap's (pcap/pcap.h, pcap/bpf.h); the pointers stay
    // valid while `lib` is loaded, which is for the process's life.
    unsafe {
        let missing = |_| NO_NPCAP.to_string();
        Ok(Wpcap {
            open_dead: *lib.get(b"pcap_open_dead\0").map_err(missing)?,
            compile: *lib.get(b"pcap_compile\0").map_err(missing)?,
            geterr: *lib.get(b"pcap_geterr\0").map_err(missing)?,
            freecode: *lib.get(b"pcap_freecode\0").map_err(missing)?,
            close: *lib.get(b"pcap_close\0").map_err(missing)?,
            filter: *lib.get(b"bpf_filter\0").map_err(missing)?,
            _lib: lib,
        })
    }
}

fn wpcap() -> Result<&'static Wpcap, String> {
    static LIB: OnceLock<Result<Wpcap, String>> = OnceLock::new();
    LIB.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// A compiled capture filter (its instructions copied out of libpcap's allocation).
pub struct Program {
    insns: Vec<BpfInsn>,
    filter: unsafe extern "C" fn(*const BpfInsn, *const u8, c_uint, c_uint) -> c_uint,
}

impl Program {
    /// Compiles `expression` for Ethernet frames; the error is libpcap's explanation, or
    /// the sentence saying to install Npcap.
    pub fn compile(expression: &str) -> Result<Self, String> {
        let w = wpcap()?;
        let expr = CString::new(expression)
            .map_err(|_| "a capture filter cannot contain a NUL byte".to_string())?;
        // SAFETY: libpcap's API used as documented: a dead handle, one compile into a
        // program we own, its instructions copied before pcap_freecode, then pcap_close.
        unsafe {
            let p = (w.open_dead)(DLT_EN10MB, 262_144);
            if p.is_null() {
                return Err(NO_NPCAP.to_string());
            }
            let mut prog = BpfProgram {
                bf_len: 0,
                bf_insns: std::ptr::null_mut(),
            };
            if (w.compile)(p, &mut prog, expr.as_ptr(), 1, PCAP_NETMASK_UNKNOWN) != 0 {
                let e = (w.geterr)(p);
                let msg = if e.is_null() {
                    "libpcap could not compile the filter".to_string()
                } else {
                    CStr::from_ptr(e).to_string_lossy().into_owned()
                };
                (w.close)(p);
                return Err(msg);
            }
            let insns = if prog.bf_insns.is_null() || prog.bf_len == 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(prog.bf_insns, prog.bf_len as usize).to_vec()
            };
            (w.freecode)(&mut prog);
            (w.close)(p);
            if insns.is_empty() {
                return Err("libpcap produced an empty program".into());
            }
            Ok(Program {
                insns,
                filter: w.filter,
            })
        }
    }

    /// The program as (code, jt, jf, k), for a kernel elsewhere to run (the on-host relay).
    pub fn instructions(&self) -> Vec<(u16, u8, u8, u32)> {
        self.insns
            .iter()
            .map(|i| (i.code, i.jt, i.jf, i.k))
            .collect()
    }

    /// True when the frame passes. `wire_len` is the frame's original length.
    #[inline]
    pub fn matches(&self, frame: &[u8], wire_len: usize) -> bool {
        // SAFETY: a non-empty program validated by pcap_compile; libpcap's interpreter
        // bounds every load by `buflen`.
        unsafe {
            (self.filter)(
                self.insns.as_ptr(),
                frame.as_ptr(),
                wire_len.max(frame.len()).min(u32::MAX as usize) as c_uint,
                frame.len().min(u32::MAX as usize) as c_uint,
            ) != 0
        }
    }
}
