//! Helper calls: which helpers a program type (and an unprivileged user, and a non-GPL license)
//! may call, and the types and sizes of their arguments.

use libbpf_rs::ProgramType;
use libbpf_rs::libbpf_sys::{
    BPF_FUNC_get_current_pid_tgid, BPF_FUNC_map_lookup_elem, BPF_FUNC_skb_load_bytes,
    BPF_FUNC_trace_printk, BPF_FUNC_xdp_adjust_head,
};
use testkit::insn::{Asm, Reg::*, Size};

use super::rule::{Pat::*, RULE, Rule, loads, refused};

/// `bpf_skb_load_bytes(skb, 2, fp - 8, len)`, then the first byte loaded.
fn load_bytes(len: i32) -> Asm {
    Asm::new()
        .mov64_imm(R2, 2)
        .mov64_reg(R3, R10)
        .add64_imm(R3, -8)
        .mov64_imm(R4, len)
        .call(BPF_FUNC_skb_load_bytes)
        .ldx(Size::B, R0, R10, -8)
        .exit()
}

/// `bpf_trace_printk("hi\n", 4)`.
fn trace_printk() -> Asm {
    Asm::new()
        .st_imm(Size::W, R10, -8, 0x000a_6968)
        .mov64_reg(R1, R10)
        .add64_imm(R1, -8)
        .mov64_imm(R2, 4)
        .call(BPF_FUNC_trace_printk)
        .mov64_imm(R0, 0)
        .exit()
}

/// `bpf_map_lookup_elem(map, fp - 4)` with nothing written at fp - 4.
fn lookup_uninit_key(f: &super::rule::Fixture) -> Asm {
    use std::os::fd::AsFd;
    Asm::new()
        .mov64_reg(R2, R10)
        .add64_imm(R2, -4)
        .ld_map_fd(R1, f.array.as_fd())
        .call(BPF_FUNC_map_lookup_elem)
        .mov64_imm(R0, 0)
        .exit()
}

rules! {
    /// An XDP-only helper called from a socket filter.
    invalid_helper_for_prog_type: Rule {
        insns: |_| Asm::new()
            .mov64_imm(R2, 0)
            .call(BPF_FUNC_xdp_adjust_head)
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[refused("EINVAL").key(Re(concat!(
            "(unknown func|program of this type cannot use helper) ",
            "bpf_xdp_adjust_head#44"
        )))],
        ..RULE
    };

    /// A tracing helper called from a socket filter: every program type may call it since 6.10
    /// ("bpf: Allow helper bpf_get_[ns_]current_pid_tgid() for all prog types"; 6.12's
    /// bpf_base_func_proto has it, 6.1's does not).
    helper_pid_tgid_in_socket_filter: Rule {
        insns: |_| Asm::new().call(BPF_FUNC_get_current_pid_tgid).mov64_imm(R0, 0).exit(),
        expect: &[
            loads().from("6.10").returns(0),
            // 5.10, 6.1: from their source, unverified.
            refused("EINVAL").before("6.10").key(S("unknown func bpf_get_current_pid_tgid#14")),
        ],
        ..RULE
    };

    /// The same helper called from a kprobe.
    helper_pid_tgid_in_kprobe: Rule {
        prog: ProgramType::Kprobe,
        insns: |_| Asm::new().call(BPF_FUNC_get_current_pid_tgid).mov64_imm(R0, 0).exit(),
        expect: &[loads()],
        ..RULE
    };

    /// A helper id no kernel has.
    helper_unknown_id: Rule {
        insns: |_| Asm::new().call(100_000).mov64_imm(R0, 0).exit(),
        expect: &[refused("EINVAL").key(S("invalid func unknown#100000"))],
        ..RULE
    };

    /// `bpf_map_lookup_elem` with a number where the map goes.
    helper_number_for_map: Rule {
        insns: |_| Asm::new()
            .st_imm(Size::W, R10, -4, 0)
            .mov64_reg(R2, R10)
            .add64_imm(R2, -4)
            .mov64_imm(R1, 0)
            .call(BPF_FUNC_map_lookup_elem)
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[refused("EACCES").key(Re("R1 type=(inv|scalar) expected=map_ptr"))],
        ..RULE
    };

    /// `bpf_skb_load_bytes` with the frame pointer where the context goes.
    helper_stack_for_context: Rule {
        insns: |_| Asm::new().mov64_reg(R1, R10).append(&load_bytes(4)),
        expect: &[refused("EACCES").key(S("R1 type=fp expected=ctx"))],
        ..RULE
    };

    /// `bpf_skb_load_bytes` of 4 bytes from offset 2 into the stack: offsets count from the
    /// network header, after the 14-byte Ethernet header, so packet byte 16 (16).
    helper_load_bytes: Rule {
        insns: |_| load_bytes(4),
        expect: &[loads().returns(16)],
        ..RULE
    };

    /// A negative size.
    helper_negative_size: Rule {
        insns: |_| load_bytes(-1),
        expect: &[refused("EACCES").key(S("R4 min value is negative, either use unsigned or 'var &= const'"))],
        ..RULE
    };

    /// A zero size where the helper needs at least one byte.
    helper_zero_size: Rule {
        insns: |_| load_bytes(0),
        expect: &[refused("EACCES").key(S("invalid zero-sized read"))],
        ..RULE
    };

    /// A size larger than the stack buffer it points to (8 bytes at fp - 8).
    helper_size_past_buffer: Rule {
        insns: |_| load_bytes(16),
        expect: &[
            // 37cce22dbd51 "bpf: verifier: Refactor helper access type tracking" (6.14): the
            // bounds check knows the helper writes there.
            refused("EINVAL").from("6.14").key(S("invalid write to stack R3 off=-8 size=16")),
            // Before, check_stack_access_within_bounds said "indirect access" for any helper.
            refused("EINVAL").before("6.14").key(S("invalid indirect access to stack R3 off=-8 size=16")),
        ],
        ..RULE
    };

    /// A map key on the stack that was never written: root may since 6.5 (6715df8d5d24 "bpf:
    /// Allow reads from uninit stack"), before that never.
    helper_uninit_key: Rule {
        insns: lookup_uninit_key,
        expect: &[
            loads().from("6.5").returns(0),
            // Seen on 5.10 and 6.1 (check_stack_range_initialized).
            refused("EACCES").before("6.5").key(S("invalid indirect read from stack R2 off -4+0 size 4")),
        ],
        ..RULE
    };

    /// A map key on the stack that was never written, unprivileged.
    helper_uninit_key_unpriv: Rule {
        insns: lookup_uninit_key,
        unprivileged: true,
        expect: &[
            // 37cce22dbd51 "bpf: verifier: Refactor helper access type tracking" (6.14): the key
            // is a read, so the bounds check (only the stack written so far, unprivileged) fails
            // first.
            refused("EACCES").from("6.14").key(S("invalid read from stack R2 off=-4 size=4")),
            // Before, helpers' stack accesses were bounds-checked as writes and the slots then
            // found uninitialised (check_stack_range_initialized).
            refused("EACCES").before("6.14").key(S("invalid indirect read from stack R2 off -4+0 size 4")),
        ],
        ..RULE
    };

    /// A GPL-only helper (`bpf_trace_printk`) under a proprietary license.
    gpl_only_helper_proprietary: Rule {
        insns: |_| trace_printk(),
        license: "Proprietary",
        expect: &[refused("EINVAL").key(S("cannot call GPL-restricted function from non-GPL compatible program"))],
        ..RULE
    };

    /// The same program under "GPL" (loaded, not run: it would print).
    gpl_only_helper_gpl: Rule {
        insns: |_| trace_printk(),
        expect: &[loads()],
        ..RULE
    };

    /// `bpf_trace_printk` unprivileged: only CAP_PERFMON gets it.
    trace_printk_unpriv: Rule {
        insns: |_| trace_printk(),
        unprivileged: true,
        expect: &[refused("EINVAL").key(Re(concat!(
            "(unknown func|program of this type cannot use helper) ",
            "bpf_trace_printk#6"
        )))],
        ..RULE
    };
}
