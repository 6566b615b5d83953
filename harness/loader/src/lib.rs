//! Loading BPF programs with their verifier logs captured: objects and skeletons through libbpf
//! ([`load`], into the record format's load outcomes), and programs from raw instructions
//! ([`insn`], [`prog`], their functions named in BTF by [`btf`]), with what the verifier made of
//! them as text ([`disasm`]). Shared by the suite's harness, the feature probes, the kernel's
//! selftests and `bpfconf objects`.

pub mod btf;
pub mod disasm;
pub mod errno;
pub mod insn;
pub mod load;
pub mod prog;
