//! RFC 9669 (BPF Instruction Set Architecture, IETF 2024) conformance, instruction by instruction,
//! on the running kernel and execution engine: the JIT, or the interpreter where
//! `net.core.bpf_jit_enable` is 0 (the `src-6.12-interp` column).
//!
//! Each case — one test, one matrix row — is one instruction (`ADD`, `SDIV`, `JSLT`, `CMPXCHG`,
//! …) with its sub-cases: each encoding (32- and 64-bit class, immediate and register source, each
//! size and offset) with edge operands; each sub-case names its conformance group. All sub-cases
//! of a case run in one socket filter built with `testkit::insn` and loaded raw: each loads its
//! operands from an array map's value (user space wrote them, so the verifier cannot fold them),
//! runs the instruction under test, and stores every register and memory word the instruction may
//! change — and registers it must not — back into the value; one `BPF_PROG_TEST_RUN` runs them
//! all, and its return value shows the program ran to its end ([`run`]).
//!
//! The expected values come from [`model`], a reference model written from the RFC's text. Where
//! the RFC states a result (`x / 0 == 0`, `LLONG_MIN / -1 == LLONG_MIN`, `-13 % 3 == -1`, …) or
//! the value is easy to work out by hand, the sub-case also carries it, and a model that disagrees
//! fails the case before the kernel is asked: a wrong model cannot hide a wrong kernel.
//!
//! A case fails listing every sub-case that differs: its encoding, operands, expected and
//! observed values. Its record's `details.rfc9669` holds the instruction, the conformance group of
//! every sub-case (§2.4: base32, base64, atomic32, atomic64, divmul32, divmul64, packet, and
//! Linux's load-acquire/store-release beyond the RFC), per group the count of sub-cases and of
//! failures, the RFC sections, the floor feature, the engine, and every sub-case's operands,
//! expected and observed values, so a report can say per kernel and engine which groups hold.
//!
//! A kernel that refuses a case's program is judged by the floor of the instruction
//! (`[insn]` in kernels/floors.toml) when its verifier's complaint is the one a kernel without the
//! instruction gives (`unsupported` below the floor, a `fail` from it); any other refusal is a
//! `fail`. [`refuse`] checks what the verifier refuses: unused fields that are not zero, opcodes
//! the RFC does not define, division by an immediate zero and immediate shifts past the width.
//!
//! Modules: [`alu`] (§4.1 without mul/div/mod, §4.2), [`divmul`], [`jmp`] (§4.3), [`mem`] (§5.1,
//! §5.2, §5.4), [`atomic`] (§5.3, and load-acquire/store-release), [`packet`] (§5.5), [`refuse`].

mod alu;
mod atomic;
mod divmul;
mod jmp;
mod mem;
mod model;
mod packet;
mod refuse;
mod run;
