//! The context, per program type: which fields a program may read or write, at which sizes, and
//! what it may return (some types check both against the attach type).

use libbpf_rs::{ProgramAttachType, ProgramType};
use testkit::insn::{Asm, Reg::*, Size};

use super::rule::{Pat::*, RULE, Rule, loads, refused};

/// `*(u32 *)(r1 + off) = 1; r0 = ret`.
fn write_field(off: i16, ret: i32) -> Asm {
    Asm::new()
        .mov64_imm(R2, 1)
        .stx(Size::W, R1, off, R2)
        .mov64_imm(R0, ret)
        .exit()
}

/// `r0 = *(size *)(r1 + off); r0 = ret`.
fn read_field(size: Size, off: i16, ret: i32) -> Asm {
    Asm::new().ldx(size, R0, R1, off).mov64_imm(R0, ret).exit()
}

/// Returns `value`.
fn returns(value: i32) -> Asm {
    Asm::new().mov64_imm(R0, value).exit()
}

/// A cgroup program's return value outside [0, 1] (5.10, 6.1: a tnum; 6.12+: smin/smax).
const OUTSIDE_0_1: super::rule::Pat =
    Re(r"At program exit the register R0 has .*should have been in (\(0x0; 0x1\)|\[0, 1\])");

rules! {
    /// A socket filter writes `skb->mark`: socket filters may write only `cb[]`.
    socket_filter_write_mark: Rule {
        insns: |_| write_field(8, 0),
        expect: &[refused("EACCES").key(S("invalid bpf_context access off=8 size=4"))],
        ..RULE
    };

    /// A socket filter writes `skb->cb[0]` and reads it back (9).
    socket_filter_write_cb: Rule {
        insns: |_| Asm::new()
            .mov64_imm(R2, 9)
            .stx(Size::W, R1, 48, R2)
            .ldx(Size::W, R0, R1, 48)
            .exit(),
        expect: &[loads().returns(9)],
        ..RULE
    };

    /// A tc program writes `skb->mark` and reads it back (1).
    tc_write_mark: Rule {
        prog: ProgramType::SchedCls,
        insns: |_| Asm::new()
            .mov64_imm(R2, 1)
            .stx(Size::W, R1, 8, R2)
            .ldx(Size::W, R0, R1, 8)
            .exit(),
        expect: &[loads().returns(1)],
        ..RULE
    };

    /// A read far past the end of `__sk_buff`.
    context_read_out_of_range: Rule {
        insns: |_| read_field(Size::W, 4096, 0),
        expect: &[refused("EACCES").key(S("invalid bpf_context access off=4096 size=4"))],
        ..RULE
    };

    /// A one-byte load of `skb->len` (a narrow load, rewritten by the verifier): 50, the
    /// 64-byte packet less the Ethernet header the test run pulls.
    context_narrow_load: Rule {
        insns: |_| Asm::new().ldx(Size::B, R0, R1, 0).exit(),
        expect: &[loads().returns(50)],
        ..RULE
    };

    /// A one-byte load of `skb->data`, a pointer field: only whole loads.
    context_narrow_load_of_pointer: Rule {
        prog: ProgramType::SchedCls,
        insns: |_| read_field(Size::B, 76, 0),
        expect: &[refused("EACCES").key(S("invalid bpf_context access off=76 size=1"))],
        ..RULE
    };

    /// A four-byte load at offset 2 of `__sk_buff`.
    context_misaligned_load: Rule {
        insns: |_| read_field(Size::W, 2, 0),
        expect: &[refused("EACCES").key(S("invalid bpf_context access off=2 size=4"))],
        ..RULE
    };

    /// XDP writes `xdp_md->data`.
    xdp_write_data: Rule {
        prog: ProgramType::Xdp,
        insns: |_| write_field(0, 2),
        expect: &[refused("EACCES").key(S("invalid bpf_context access off=0 size=4"))],
        ..RULE
    };

    /// XDP reads `ingress_ifindex`: the test run's packet arrives on loopback (1).
    xdp_read_ingress_ifindex: Rule {
        prog: ProgramType::Xdp,
        insns: |_| Asm::new().ldx(Size::W, R0, R1, 12).exit(),
        expect: &[loads().returns(1)],
        ..RULE
    };

    /// A kprobe reads the last register of `pt_regs` (x86-64: `ss` at 160).
    kprobe_read_regs: Rule {
        prog: ProgramType::Kprobe,
        insns: |_| read_field(Size::DW, 160, 0),
        expect: &[loads()],
        ..RULE
    };

    /// A kprobe reads past `pt_regs` (168 bytes on x86-64).
    kprobe_read_past_regs: Rule {
        prog: ProgramType::Kprobe,
        insns: |_| read_field(Size::DW, 168, 0),
        expect: &[refused("EACCES").key(S("invalid bpf_context access off=168 size=8"))],
        ..RULE
    };

    /// A kprobe writes past the end of `pt_regs` (168 bytes on x86_64). (Writes inside it are
    /// refused by 6.12 and the host's 6.18 but accepted by Debian's 6.18.15 and 7.3: not a rule
    /// the matrix can state by release alone.)
    kprobe_write_past_regs: Rule {
        prog: ProgramType::Kprobe,
        insns: |_| Asm::new()
            .mov64_imm(R2, 0)
            .stx(Size::DW, R1, 168, R2)
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[refused("EACCES").key(S("invalid bpf_context access off=168 size=8"))],
        ..RULE
    };

    /// A raw tracepoint reads its 13th argument: there are at most 12.
    raw_tracepoint_read_past_args: Rule {
        prog: ProgramType::RawTracepoint,
        insns: |_| read_field(Size::DW, 96, 0),
        expect: &[refused("EACCES").key(S("invalid bpf_context access off=96 size=8"))],
        ..RULE
    };

    /// A perf event program reads the low half of `sample_period` (a narrow load at 168).
    perf_event_narrow_sample_period: Rule {
        prog: ProgramType::PerfEvent,
        insns: |_| read_field(Size::W, 168, 0),
        expect: &[loads()],
        ..RULE
    };

    /// A connect4 program reads `user_ip4`.
    sock_addr_read_user_ip4: Rule {
        prog: ProgramType::CgroupSockAddr,
        attach: Some(ProgramAttachType::CgroupInet4Connect),
        insns: |_| read_field(Size::W, 4, 1),
        expect: &[loads()],
        ..RULE
    };

    /// A connect4 program reads `user_ip6`: only connect6 programs may.
    sock_addr_read_user_ip6_in_connect4: Rule {
        prog: ProgramType::CgroupSockAddr,
        attach: Some(ProgramAttachType::CgroupInet4Connect),
        insns: |_| read_field(Size::W, 8, 1),
        expect: &[refused("EACCES").key(S("invalid bpf_context access off=8 size=4"))],
        ..RULE
    };

    /// A connect4 program returns 2: sock_addr programs return 0 or 1.
    sock_addr_return_out_of_range: Rule {
        prog: ProgramType::CgroupSockAddr,
        attach: Some(ProgramAttachType::CgroupInet4Connect),
        insns: |_| returns(2),
        expect: &[refused("EINVAL").key(OUTSIDE_0_1)],
        ..RULE
    };

    /// An ingress cgroup skb program returns 2: ingress allows 0 or 1.
    cgroup_skb_ingress_return_2: Rule {
        prog: ProgramType::CgroupSkb,
        attach: Some(ProgramAttachType::CgroupInetIngress),
        insns: |_| returns(2),
        expect: &[refused("EINVAL").key(OUTSIDE_0_1)],
        ..RULE
    };

    /// An egress cgroup skb program returns 2: egress allows 0 to 3 (congestion notification).
    cgroup_skb_egress_return_2: Rule {
        prog: ProgramType::CgroupSkb,
        attach: Some(ProgramAttachType::CgroupInetEgress),
        insns: |_| returns(2),
        expect: &[loads().returns(2)],
        ..RULE
    };

    /// A cgroup skb program, unprivileged: the other type users may load.
    cgroup_skb_unpriv: Rule {
        prog: ProgramType::CgroupSkb,
        insns: |_| returns(1),
        unprivileged: true,
        expect: &[loads().returns(1)],
        ..RULE
    };

    /// A sock_ops program writes `reply`.
    sock_ops_write_reply: Rule {
        prog: ProgramType::SockOps,
        insns: |_| write_field(4, 1),
        expect: &[loads()],
        ..RULE
    };

    /// A sock_ops program writes `op`: read-only.
    sock_ops_write_op: Rule {
        prog: ProgramType::SockOps,
        insns: |_| write_field(0, 1),
        expect: &[refused("EACCES").key(S("invalid bpf_context access off=0 size=4"))],
        ..RULE
    };

    /// A sock_create program writes `sk->mark`.
    cgroup_sock_write_mark: Rule {
        prog: ProgramType::CgroupSock,
        attach: Some(ProgramAttachType::CgroupInetSockCreate),
        insns: |_| write_field(16, 1),
        expect: &[loads()],
        ..RULE
    };

    /// A sock_create program writes `sk->src_ip4`: read-only.
    cgroup_sock_write_src_ip4: Rule {
        prog: ProgramType::CgroupSock,
        attach: Some(ProgramAttachType::CgroupInetSockCreate),
        insns: |_| write_field(24, 1),
        expect: &[refused("EACCES").key(S("invalid bpf_context access off=24 size=4"))],
        ..RULE
    };
}
