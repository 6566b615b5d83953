//! The suite's BPF sample programs as libbpf-rs skeletons, one module per object (see `build.rs`).
//!
//! `programs/src/bpf/xdp.bpf.c` becomes module `xdp` with `XdpSkelBuilder`; its behaviour test is
//! the module `xdp` of the test binary `tests/suite/`.

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/skeletons.rs"));

/// How every object was compiled, recorded with each result: clang's version line.
pub const CLANG_VERSION: &str = env!("BPFCONF_CLANG_VERSION");
/// The `-mcpu` (BPF instruction-set version) of every object that is not a variant.
pub const MCPU: &str = env!("BPFCONF_MCPU");
