//! Calls between functions of one program (bpf-to-bpf): frames, their combined stack, recursion,
//! and callbacks (`bpf_loop`, 5.17+).

use libbpf_rs::libbpf_sys::BPF_FUNC_loop;
use testkit::insn::{Alu, Asm, Reg::*, Size};

use super::rule::{Need, Pat::*, RULE, Rule, loads, refused};

/// `f(5)` where `f(x) = x + 1`.
fn call_plus_one() -> Asm {
    Asm::new()
        .mov64_imm(R1, 5)
        .call_local(1)
        .exit()
        .mov64_reg(R0, R1)
        .add64_imm(R0, 1)
        .exit()
}

/// The main function and the one it calls each store 8 bytes at `fp - depth`.
fn two_frames_of(depth: i16) -> Asm {
    Asm::new()
        .st_imm(Size::DW, R10, -depth, 0)
        .call_local(1)
        .exit()
        .st_imm(Size::DW, R10, -depth, 0)
        .mov64_imm(R0, 0)
        .exit()
}

/// `frames` functions, each calling the next; the last returns 0.
fn call_chain(frames: usize) -> Asm {
    (1..frames)
        .fold(Asm::new(), |asm, _| asm.call_local(1).exit())
        .mov64_imm(R0, 0)
        .exit()
}

/// `bpf_loop(10, callback, &counter, 0)`, the callback adding 1 to the counter and returning
/// `ret`; the program returns the counter.
fn loop_ten_times(ret: i32) -> Asm {
    Asm::new()
        .st_imm(Size::DW, R10, -8, 0)
        .mov64_imm(R1, 10)
        .ld_func(R2, 7)
        .mov64_reg(R3, R10)
        .add64_imm(R3, -8)
        .mov64_imm(R4, 0)
        .call(BPF_FUNC_loop)
        .ldx(Size::DW, R0, R10, -8)
        .exit()
        // The callback (slot 10): r1 = index, r2 = &counter.
        .ldx(Size::DW, R0, R2, 0)
        .add64_imm(R0, 1)
        .stx(Size::DW, R2, 0, R0)
        .mov64_imm(R0, ret)
        .exit()
}

/// The functions of [`loop_ten_times`]: a callback needs BTF that names it.
const LOOP_FUNCTIONS: &[(u32, &str)] = &[(0, "main"), (10, "count")];

/// How a kernel without `bpf_loop` (5.17) refuses it: an unknown helper id, or (before 5.13)
/// the callback's `ld_imm64` it does not know.
const NEEDS_BPF_LOOP: &[Need] = &[Need {
    id: "helper.bpf_loop",
    // 5.10 stops earlier: it takes the callback's ld_imm64 (BPF_PSEUDO_FUNC, 5.13) for no
    // subprogram, so the BTF's two functions do not match its one.
    absent: Re(
        r"unknown#181|unrecognized bpf_ld_imm64 insn|number of funcs in func_info doesn't match number of subprogs",
    ),
}];

rules! {
    /// A call to a second function: `f(5) = 6`.
    subprog_call: Rule {
        insns: |_| call_plus_one(),
        expect: &[loads().returns(6)],
        ..RULE
    };

    /// A call to a second function, unprivileged: calls need CAP_BPF (5.10: "function calls
    /// to other bpf functions are allowed for …"; 6.1+: "loading/calling other bpf or kernel
    /// functions are allowed for …").
    subprog_call_unpriv: Rule {
        insns: |_| call_plus_one(),
        unprivileged: true,
        expect: &[refused("EPERM").key(S("are allowed for CAP_BPF and CAP_SYS_ADMIN"))],
        ..RULE
    };

    /// The called function reads the caller's stack through a pointer argument (41 + 1).
    subprog_reads_caller_stack: Rule {
        insns: |_| Asm::new()
            .st_imm(Size::DW, R10, -8, 41)
            .mov64_reg(R1, R10)
            .add64_imm(R1, -8)
            .call_local(1)
            .exit()
            .ldx(Size::DW, R0, R1, 0)
            .alu64_imm(Alu::Add, R0, 1)
            .exit(),
        expect: &[loads().returns(42)],
        ..RULE
    };

    /// Two frames of 200 bytes: 448 (or, JITed, 416) of the 512 bytes.
    combined_stack_fits: Rule {
        insns: |_| two_frames_of(200),
        expect: &[loads().returns(0)],
        ..RULE
    };

    /// Two frames of 304 bytes: more than the 512 of one program. Each frame is rounded up to
    /// 32 bytes (640), or to 16 when the program is JITed (608).
    combined_stack_too_large: Rule {
        insns: |_| two_frames_of(304),
        expect: &[
            // b16904fd9f01 "bpf: Fix a few selftest failures due to llvm18 change" (6.8; 6.6.16
            // by stable; not in 6.1.176, seen).
            refused("EACCES").from("6.8").jit(true).key(S("combined stack size of 2 calls is 608. Too large")),
            // The interpreter, and the JIT before (seen on 5.10, 6.1 and src-6.12-interp).
            refused("EACCES").key(S("combined stack size of 2 calls is 640. Too large")),
        ],
        ..RULE
    };

    /// Eight frames, the most there may be.
    call_chain_of_8_frames: Rule {
        insns: |_| call_chain(8),
        expect: &[loads().returns(0)],
        ..RULE
    };

    /// Nine frames: too deep where a call chain may have 8 (MAX_CALL_FRAMES); 16 since 7.2.
    call_chain_of_9_frames: Rule {
        insns: |_| call_chain(9),
        expect: &[
            // 2148794eeaf2 "bpf: Raise maximum call chain depth to 16 frames" (7.2).
            loads().from("7.2").returns(0),
            refused("E2BIG").before("7.2").key(S("the call stack of 9 frames is too deep")),
        ],
        ..RULE
    };

    /// A function that calls itself: refused by check_cfg as a loop, then by the frame limit
    /// the verifier reaches following the calls, then as a cycle of the call graph.
    recursive_call: Rule {
        insns: |_| Asm::new().call_local(1).exit().call_local(-1).exit(),
        expect: &[
            // e6898ec751e4 "bpf: Sort subprogs in topological order after check_cfg()" (7.1):
            // the sort refuses a cycle of calls before the verifier walks them (no BTF names
            // the functions here, so "recursive call from () to ()").
            refused("EINVAL").from("7.1").key(S("recursive call from")),
            // 10e14e9652bf "bpf: fix control-flow graph checking in privileged mode" (6.7;
            // 6.6.3 by stable): check_cfg lets root's back-edges through, so the verifier
            // follows the calls until there are too many frames. Not in 6.1.176 (seen).
            refused("E2BIG").from("6.7").key(S("the call stack of 9 frames is too deep")),
            refused("EINVAL").before("6.7").key(S("back-edge from insn 2 to 2")),
        ],
        ..RULE
    };

    /// `bpf_loop` runs its callback ten times.
    bpf_loop_callback: Rule {
        insns: |_| loop_ten_times(0),
        functions: LOOP_FUNCTIONS,
        needs: NEEDS_BPF_LOOP,
        expect: &[loads().returns(10)],
        ..RULE
    };

    /// A `bpf_loop` callback returning 2: callbacks return 0 (go on) or 1 (stop).
    bpf_loop_callback_return_out_of_range: Rule {
        insns: |_| loop_ten_times(2),
        functions: LOOP_FUNCTIONS,
        needs: NEEDS_BPF_LOOP,
        expect: &[refused("EINVAL").key(Re(r"At callback return the register R0 has .*should have been in"))],
        ..RULE
    };
}
