//! Reference tracking: what a helper hands out (a socket, a ring buffer record) must be given
//! back exactly once, on every path, after its NULL check.

use std::os::fd::AsFd;

use libbpf_rs::ProgramType;
use libbpf_rs::libbpf_sys::{
    BPF_FUNC_ringbuf_reserve, BPF_FUNC_ringbuf_submit, BPF_FUNC_sk_lookup_tcp, BPF_FUNC_sk_release,
};
use testkit::insn::{Asm, Jmp, Reg::*, Size};

use super::rule::{Fixture, Pat::*, RULE, Rule, loads, refused};

/// `r0 = bpf_sk_lookup_tcp(skb, &(ipv4 tuple){0}, 12, BPF_F_CURRENT_NETNS, 0)` (slot 9 calls).
fn sk_lookup() -> Asm {
    Asm::new()
        .mov64_reg(R6, R1)
        .st_imm(Size::DW, R10, -16, 0)
        .st_imm(Size::DW, R10, -8, 0)
        .mov64_reg(R1, R6)
        .mov64_reg(R2, R10)
        .add64_imm(R2, -16)
        .mov64_imm(R3, 12)
        .mov64_imm(R4, -1)
        .mov64_imm(R5, 0)
        .call(BPF_FUNC_sk_lookup_tcp)
}

/// `r0 = bpf_ringbuf_reserve(ring, 8, 0)` (slot 4 calls).
fn reserve(f: &Fixture) -> Asm {
    Asm::new()
        .ld_map_fd(R1, f.ringbuf().as_fd())
        .mov64_imm(R2, 8)
        .mov64_imm(R3, 0)
        .call(BPF_FUNC_ringbuf_reserve)
}

rules! {
    /// A socket looked up, NULL-checked and released: accepted; no TCP socket has the all-zero
    /// tuple, so the lookup finds none (0).
    sk_lookup_released: Rule {
        prog: ProgramType::SchedCls,
        insns: |_| sk_lookup()
            .jmp_imm(Jmp::Jeq, R0, 0, 4)
            .mov64_reg(R1, R0)
            .call(BPF_FUNC_sk_release)
            .mov64_imm(R0, 1)
            .exit()
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[loads().returns(0)],
        ..RULE
    };

    /// A socket looked up and never released.
    sk_lookup_not_released: Rule {
        prog: ProgramType::SchedCls,
        insns: |_| sk_lookup().mov64_imm(R0, 0).exit(),
        expect: &[
            refused("EINVAL").from("6.18").log(&[
                S("Unreleased reference id=2 alloc_insn=9"),
                S("BPF_EXIT instruction in main prog would lead to reference leak"),
            ]),
            refused("EINVAL").before("6.18").key(S("Unreleased reference id=2 alloc_insn=9")),
        ],
        ..RULE
    };

    /// `bpf_sk_release` of a lookup's result that may be NULL.
    sk_release_unchecked: Rule {
        prog: ProgramType::SchedCls,
        insns: |_| sk_lookup()
            .mov64_reg(R1, R0)
            .call(BPF_FUNC_sk_release)
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[refused("EACCES").key(Re(r"R1 type=sock_or_null expected=sock"))],
        ..RULE
    };

    /// The same socket released twice: after the first release the copy is a number.
    sk_release_twice: Rule {
        prog: ProgramType::SchedCls,
        insns: |_| sk_lookup()
            .jmp_imm(Jmp::Jeq, R0, 0, 6)
            .mov64_reg(R7, R0)
            .mov64_reg(R1, R7)
            .call(BPF_FUNC_sk_release)
            .mov64_reg(R1, R7)
            .call(BPF_FUNC_sk_release)
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[refused("EACCES").key(Re(r"R1 type=(inv|scalar) expected=sock"))],
        ..RULE
    };

    /// A ring buffer record reserved, written and submitted (returns 1: the reserve succeeded).
    ringbuf_reserve_submit: Rule {
        insns: |f| reserve(f)
            .jmp_imm(Jmp::Jeq, R0, 0, 6)
            .st_imm(Size::DW, R0, 0, 7)
            .mov64_reg(R1, R0)
            .mov64_imm(R2, 0)
            .call(BPF_FUNC_ringbuf_submit)
            .mov64_imm(R0, 1)
            .exit()
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[loads().returns(1)],
        ..RULE
    };

    /// A ring buffer record reserved and never submitted.
    ringbuf_reserve_not_submitted: Rule {
        insns: |f| reserve(f).mov64_imm(R0, 0).exit(),
        expect: &[
            refused("EINVAL").from("6.18").log(&[
                S("Unreleased reference id=2 alloc_insn=4"),
                S("BPF_EXIT instruction in main prog would lead to reference leak"),
            ]),
            refused("EINVAL").before("6.18").key(S("Unreleased reference id=2 alloc_insn=4")),
        ],
        ..RULE
    };

    /// A store into a ring buffer record after it was submitted.
    ringbuf_write_after_submit: Rule {
        insns: |f| reserve(f)
            .jmp_imm(Jmp::Jeq, R0, 0, 5)
            .mov64_reg(R6, R0)
            .mov64_reg(R1, R0)
            .mov64_imm(R2, 0)
            .call(BPF_FUNC_ringbuf_submit)
            .st_imm(Size::DW, R6, 0, 1)
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[refused("EACCES").key(Re(r"R6 invalid mem access '(inv|scalar)'"))],
        ..RULE
    };
}
