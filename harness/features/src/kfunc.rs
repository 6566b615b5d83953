//! Kernel functions (kfuncs) through the kernel's BTF.
//!
//! Two methods, because the kernel only started describing its kfuncs in BTF late:
//! - **tagged**: kernels built with pahole 1.27+ (`--btf_features=decl_tag_kfuncs`, Linux 6.11+) tag
//!   every kfunc's `FUNC` with a `DECL_TAG "bpf_kfunc"`: the complete list, read from
//!   `/sys/kernel/btf/vmlinux`. Older kernels register their kfunc id sets only in the image's
//!   `.BTF_ids` section, which no interface exports, so there is no list to read.
//! - **probed**: for each kfunc the suite names (`[kfunc]` rows of `kernels/floors.toml`), a
//!   two-instruction program calling it (`BPF_PSEUDO_KFUNC_CALL` with the `FUNC`'s BTF id) is loaded
//!   as every probeable program type. The verifier checks that the type may call the kfunc before
//!   it checks the arguments, so a refusal that names the call ("calling kernel function … is not
//!   allowed", or a kernel without kfunc calls: "reserved fields", "unknown opcode") means no, and
//!   any other refusal (the missing arguments) means yes. A kfunc without a `FUNC` in the BTF is
//!   missing for every type. This works on every kernel era (kfunc calls exist from 5.13).

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};

use loader::insn::{ALU64, CALL, EXIT, Insn, JMP, K, MOV, PSEUDO_KFUNC_CALL};
use serde::{Deserialize, Serialize};

/// What the kernel's BTF and the probe loads said about kfuncs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kfuncs {
    /// `/sys/kernel/btf/vmlinux` could be read.
    pub btf: bool,
    /// The kfuncs the BTF tags `bpf_kfunc` (sorted); `None` where it tags none (pre-6.11 kernels or
    /// an older pahole), which means "no list", not "no kfuncs".
    pub tagged: Option<Vec<String>>,
    /// Probed kfunc → the program types whose programs may call it (empty: none may, or it is not
    /// in the BTF).
    pub probed: BTreeMap<String, Vec<String>>,
}

/// The kfuncs the floors file has rows for (`[kfunc]` of `kernels/floors.toml`).
pub fn floor_rows() -> Vec<String> {
    crate::floors::table()
        .keys()
        .filter_map(|id| id.strip_prefix("kfunc."))
        .map(str::to_owned)
        .collect()
}

/// Reads the vmlinux BTF and probes `names` against program types `types` (libbpf type ids with
/// their names).
pub fn probe(names: &[String], types: &[(u32, String)]) -> Kfuncs {
    let Some(btf) = VmlinuxBtf::load() else {
        return Kfuncs {
            probed: names.iter().map(|n| (n.clone(), Vec::new())).collect(),
            ..Kfuncs::default()
        };
    };
    let probed = names
        .iter()
        .map(|name| {
            let callers = match btf.func_id(name) {
                Some(id) => types
                    .iter()
                    .filter(|(ty, _)| callable(*ty, id))
                    .map(|(_, ty_name)| ty_name.clone())
                    .collect(),
                None => Vec::new(),
            };
            (name.clone(), callers)
        })
        .collect();
    Kfuncs {
        btf: true,
        tagged: btf.tagged(),
        probed,
    }
}

/// The running kernel's BTF, freed on drop.
struct VmlinuxBtf(*mut libbpf_sys::btf);

impl VmlinuxBtf {
    fn load() -> Option<Self> {
        // SAFETY: returns an owned object or an error pointer/NULL.
        let btf = unsafe { libbpf_sys::btf__load_vmlinux_btf() };
        // SAFETY: libbpf_get_error accepts any pointer libbpf returned.
        (!btf.is_null() && unsafe { libbpf_sys::libbpf_get_error(btf.cast()) } == 0)
            .then_some(VmlinuxBtf(btf))
    }

    /// The BTF id of the `FUNC` named `name`.
    fn func_id(&self, name: &str) -> Option<u32> {
        let name = CString::new(name).ok()?;
        // SAFETY: a live BTF object and a NUL-terminated name.
        let id = unsafe {
            libbpf_sys::btf__find_by_name_kind(self.0, name.as_ptr(), libbpf_sys::BTF_KIND_FUNC)
        };
        u32::try_from(id).ok().filter(|id| *id > 0)
    }

    /// The names of the `FUNC`s a `DECL_TAG "bpf_kfunc"` points at, if any.
    fn tagged(&self) -> Option<Vec<String>> {
        // SAFETY: a live BTF object.
        let count = unsafe { libbpf_sys::btf__type_cnt(self.0) };
        let mut names: Vec<String> = (1..count)
            .filter_map(|id| {
                let t = self.type_by_id(id)?;
                (kind(t) == libbpf_sys::BTF_KIND_DECL_TAG && self.name(t) == "bpf_kfunc")
                    .then_some(())?;
                // SAFETY: a DECL_TAG's union holds the id of the type it tags.
                let target = self.type_by_id(unsafe { t.__bindgen_anon_1.type_ })?;
                (kind(target) == libbpf_sys::BTF_KIND_FUNC).then(|| self.name(target))
            })
            .collect();
        names.sort();
        names.dedup();
        (!names.is_empty()).then_some(names)
    }

    fn type_by_id(&self, id: u32) -> Option<&libbpf_sys::btf_type> {
        // SAFETY: a live BTF object; NULL for an id out of range; the type lives as long as it.
        unsafe { libbpf_sys::btf__type_by_id(self.0, id).as_ref() }
    }

    fn name(&self, t: &libbpf_sys::btf_type) -> String {
        // SAFETY: a live BTF object; the result is a NUL-terminated string inside it, or NULL.
        let ptr = unsafe { libbpf_sys::btf__name_by_offset(self.0, t.name_off) };
        if ptr.is_null() {
            return String::new();
        }
        // SAFETY: see above.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for VmlinuxBtf {
    fn drop(&mut self) {
        // SAFETY: owned, freed once.
        unsafe { libbpf_sys::btf__free(self.0) }
    }
}

fn kind(t: &libbpf_sys::btf_type) -> u32 {
    (t.info >> 24) & 0x1f
}

/// Refusals that are about the call itself, not its arguments.
const NOT_CALLABLE: &[&str] = &[
    "calling kernel function",
    "cannot call kernel function",
    "JIT does not support calling kernel function",
    "kernel btf_id",
    "reserved fields",
    "unknown opcode",
];

/// Whether a program of type `ty` may call the kfunc with BTF id `id` (see the module's doc).
fn callable(ty: u32, id: u32) -> bool {
    let insns = [
        // call kfunc#id (vmlinux BTF: off 0)
        Insn::new(JMP | CALL, 0, PSEUDO_KFUNC_CALL, 0, id as i32),
        // r0 = 0
        Insn::new(ALU64 | MOV | K, 0, 0, 0, 0),
        Insn::new(JMP | EXIT, 0, 0, 0, 0),
    ]
    .map(Insn::to_bpf);
    let mut load = loader::prog::Load::new(ty, c"GPL", &insns);
    load.log_level = 1;
    // What libbpf's own type probe (probe_prog_load) sets per type.
    match ty {
        libbpf_sys::BPF_PROG_TYPE_CGROUP_SOCK_ADDR => {
            load.expected_attach_type = libbpf_sys::BPF_CGROUP_INET4_CONNECT
        }
        libbpf_sys::BPF_PROG_TYPE_CGROUP_SOCKOPT => {
            load.expected_attach_type = libbpf_sys::BPF_CGROUP_GETSOCKOPT
        }
        libbpf_sys::BPF_PROG_TYPE_SK_LOOKUP => {
            load.expected_attach_type = libbpf_sys::BPF_SK_LOOKUP
        }
        libbpf_sys::BPF_PROG_TYPE_LIRC_MODE2 => {
            load.expected_attach_type = libbpf_sys::BPF_LIRC_MODE2
        }
        libbpf_sys::BPF_PROG_TYPE_NETFILTER => {
            load.expected_attach_type = libbpf_sys::BPF_NETFILTER
        }
        libbpf_sys::BPF_PROG_TYPE_SYSCALL => load.flags = libbpf_sys::BPF_F_SLEEPABLE,
        _ => {}
    }
    let mut log = vec![0u8; 64 * 1024];
    if loader::prog::load(&load, &mut log).fd.is_ok() {
        return true;
    }
    let log = String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)]);
    !log.is_empty() && !NOT_CALLABLE.iter().any(|m| log.contains(m))
}
