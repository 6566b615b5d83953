//! Register state: what may be read, what a call clobbers, and pointers that must not leave the
//! program (unprivileged).

use libbpf_rs::libbpf_sys::BPF_FUNC_get_prandom_u32;
use testkit::insn::{Alu, Asm, Jmp, Reg::*, Size};

use std::os::fd::AsFd;

use super::rule::{Pat::*, RULE, Rule, loads, lookup, refused};

rules! {
    /// R2 is never written before it is read (only R1, the context, and R10 are set on entry).
    uninit_register_read: Rule {
        insns: |_| Asm::new().mov64_reg(R0, R2).exit(),
        expect: &[refused("EACCES").key(S("R2 !read_ok"))],
        ..RULE
    };

    /// `exit` with nothing in R0.
    exit_without_return_value: Rule {
        insns: |_| Asm::new().exit(),
        expect: &[refused("EACCES").key(S("R0 !read_ok"))],
        ..RULE
    };

    /// R10, the frame pointer, is read-only.
    write_to_frame_pointer: Rule {
        insns: |_| Asm::new().mov64_imm(R10, 0).mov64_imm(R0, 0).exit(),
        expect: &[refused("EACCES").key(S("frame pointer is read only"))],
        ..RULE
    };

    /// A helper call scratches R1–R5: R1 is unreadable after it.
    caller_saved_clobbered_by_call: Rule {
        insns: |_| Asm::new().call(BPF_FUNC_get_prandom_u32).mov64_reg(R0, R1).exit(),
        expect: &[refused("EACCES").key(S("R1 !read_ok"))],
        ..RULE
    };

    /// R6–R9 survive a helper call.
    callee_saved_kept_across_call: Rule {
        insns: |_| Asm::new()
            .mov64_imm(R6, 7)
            .call(BPF_FUNC_get_prandom_u32)
            .mov64_reg(R0, R6)
            .exit(),
        expect: &[loads().returns(7)],
        ..RULE
    };

    /// Returning the context pointer: root may.
    return_pointer: Rule {
        insns: |_| Asm::new().mov64_reg(R0, R1).exit(),
        expect: &[loads()],
        ..RULE
    };

    /// Returning the context pointer, unprivileged: an address would leak.
    return_pointer_unpriv: Rule {
        insns: |_| Asm::new().mov64_reg(R0, R1).exit(),
        unprivileged: true,
        expect: &[refused("EACCES").key(S("R0 leaks addr as return value"))],
        ..RULE
    };

    /// Storing the frame pointer into a map value: root may.
    pointer_into_map: Rule {
        insns: |f| lookup(f.array.as_fd())
            .jmp_imm(Jmp::Jeq, R0, 0, 1)
            .stx(Size::DW, R0, 0, R10)
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[loads().returns(0).not(&[S("leaks addr")])],
        ..RULE
    };

    /// Storing the frame pointer into a map value, unprivileged: user space would read it.
    pointer_into_map_unpriv: Rule {
        insns: |f| lookup(f.array.as_fd())
            .jmp_imm(Jmp::Jeq, R0, 0, 1)
            .stx(Size::DW, R0, 0, R10)
            .mov64_imm(R0, 0)
            .exit(),
        unprivileged: true,
        expect: &[refused("EACCES").key(S("R10 leaks addr into map"))],
        ..RULE
    };

    /// Comparing a pointer with a number, unprivileged: the outcome would tell its value.
    pointer_comparison_unpriv: Rule {
        insns: |_| Asm::new()
            .mov64_imm(R0, 0)
            .jmp_imm(Jmp::Jgt, R1, 5, 0)
            .exit(),
        unprivileged: true,
        expect: &[refused("EACCES").key(S("R1 pointer comparison prohibited"))],
        ..RULE
    };

    /// `w0 = w1` of the context pointer: root gets a number.
    partial_pointer_copy: Rule {
        insns: |_| Asm::new().alu32_reg(Alu::Mov, R0, R1).exit(),
        expect: &[loads()],
        ..RULE
    };

    /// `w0 = w1` of the context pointer, unprivileged: half an address would leak.
    partial_pointer_copy_unpriv: Rule {
        insns: |_| Asm::new().alu32_reg(Alu::Mov, R0, R1).exit(),
        unprivileged: true,
        expect: &[refused("EACCES").key(S("R1 partial copy of pointer"))],
        ..RULE
    };

    /// The plainest program, unprivileged: a socket filter anyone may load.
    socket_filter_unpriv: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 7).exit(),
        unprivileged: true,
        expect: &[loads().returns(7)],
        ..RULE
    };

    /// An XDP program, unprivileged: only socket filters and cgroup skb programs may be loaded
    /// without CAP_BPF, and the kernel says so before the verifier runs (no log).
    xdp_unpriv: Rule {
        prog: libbpf_rs::ProgramType::Xdp,
        insns: |_| Asm::new().mov64_imm(R0, 2).exit(),
        unprivileged: true,
        expect: &[refused("EPERM").key(S("an empty verifier log"))],
        ..RULE
    };
}
