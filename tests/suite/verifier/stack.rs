//! The stack: 512 bytes below R10, aligned accesses, initialised before read, pointers spilled
//! and filled whole, variable offsets (root only).

use libbpf_rs::libbpf_sys::BPF_FUNC_get_prandom_u32;
use testkit::insn::{Alu, Asm, Reg::*, Size};

use super::rule::{Pat::*, RULE, Rule, loads, refused};

/// `*(u8 *)(fp - 16 + (random & 7)) = 0`: a store at a variable offset.
fn variable_offset_store() -> Asm {
    Asm::new()
        .call(BPF_FUNC_get_prandom_u32)
        .alu64_imm(Alu::And, R0, 7)
        .mov64_reg(R2, R10)
        .add64_imm(R2, -16)
        .alu64_reg(Alu::Add, R2, R0)
        .st_imm(Size::B, R2, 0, 0)
        .mov64_imm(R0, 0)
        .exit()
}

rules! {
    /// A store 520 bytes below the frame pointer: the stack is 512 bytes.
    stack_out_of_bounds: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 0).stx(Size::DW, R10, -520, R0).exit(),
        expect: &[refused("EACCES").key(S("invalid write to stack R10 off=-520 size=8"))],
        ..RULE
    };

    /// A store above the frame pointer.
    stack_above_frame: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 0).stx(Size::DW, R10, 8, R0).exit(),
        expect: &[refused("EACCES").key(S("invalid write to stack R10 off=8 size=8"))],
        ..RULE
    };

    /// An 8-byte store at fp-4: stack accesses must be aligned to their size.
    stack_misaligned: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 0).stx(Size::DW, R10, -4, R0).exit(),
        expect: &[refused("EACCES").key(Re(r"misaligned stack access off .*-4.* size 8"))],
        ..RULE
    };

    /// Reading 8 bytes the program never wrote: root may since 6.5 (6715df8d5d24 "bpf: Allow
    /// reads from uninit stack"), before that never.
    stack_uninit_read: Rule {
        insns: |_| Asm::new().ldx(Size::DW, R0, R10, -8).mov64_imm(R0, 0).exit(),
        expect: &[
            loads().from("6.5").returns(0),
            // 5.10, 6.1: from their source (check_stack_slot_within_bounds: a read below the
            // stack written so far), unverified.
            refused("EACCES").before("6.5").key(S("invalid read from stack R10 off=-8 size=8")),
        ],
        ..RULE
    };

    /// Reading 8 bytes the program never wrote, unprivileged: stale kernel data would leak.
    stack_uninit_read_unpriv: Rule {
        insns: |_| Asm::new().ldx(Size::DW, R0, R10, -8).mov64_imm(R0, 0).exit(),
        unprivileged: true,
        // 5.10, 6.1, 6.12: the same check in their source, unverified.
        expect: &[refused("EACCES").key(S("invalid read from stack R10 off=-8 size=8"))],
        ..RULE
    };

    /// The context pointer spilled to the stack and filled back stays a context pointer: a load
    /// through it reads `skb->len` (50: the test run pulls the Ethernet header).
    stack_spill_fill_pointer: Rule {
        insns: |_| Asm::new()
            .stx(Size::DW, R10, -8, R1)
            .ldx(Size::DW, R2, R10, -8)
            .ldx(Size::W, R0, R2, 0)
            .exit(),
        expect: &[loads().returns(50)],
        ..RULE
    };

    /// A spilled pointer with one byte overwritten fills back as a number, not a pointer.
    stack_spilled_pointer_overwritten: Rule {
        insns: |_| Asm::new()
            .stx(Size::DW, R10, -8, R1)
            .st_imm(Size::B, R10, -8, 0)
            .ldx(Size::DW, R2, R10, -8)
            .ldx(Size::W, R0, R2, 0)
            .exit(),
        expect: &[refused("EACCES").key(Re(r"R2 invalid mem access '(inv|scalar)'"))],
        ..RULE
    };

    /// Four bytes of a spilled pointer filled into a register.
    stack_partial_fill_of_pointer: Rule {
        insns: |_| Asm::new()
            .stx(Size::DW, R10, -8, R1)
            .ldx(Size::W, R0, R10, -8)
            .exit(),
        expect: &[refused("EACCES").key(S("invalid size of register fill"))],
        ..RULE
    };

    /// A store at a variable (bounded) stack offset: root may (writes were allowed before
    /// 01f810ace9ed "bpf: Allow variable-offset stack access" extended it to reads in 5.12).
    stack_variable_offset_store: Rule {
        insns: |_| variable_offset_store(),
        expect: &[
            // Privileged: 5.10.223 accepts it as well (seen), as do all later kernels.
            loads().returns(0),
        ],
        ..RULE
    };

    /// A store at a variable stack offset, unprivileged: refused where the verifier enforces
    /// its Spectre v1 rules (its masking of stack pointer arithmetic needs a constant offset).
    stack_variable_offset_store_unpriv: Rule {
        insns: |_| variable_offset_store(),
        unprivileged: true,
        expect: &[
            // CPU mitigations off (the source-built 6.12, built without them; see
            // `super::spectre`): the arithmetic passes, and the store is refused because the
            // slots in its range were never written (the message says "spilled ptr" of every
            // slot that is not data).
            refused("EINVAL").spectre_v1(false).key(S("spilled ptr in range of var-offset stack write")),
            // 022ac0750883 "bpf: use reg->var_off instead of reg->off for pointers" (7.1): the
            // fixed offset -16 is part of var_off.
            refused("EACCES").from("7.1").spectre_v1(true).key(S("R2 variable stack access prohibited for !root, var_off=(0xfffffffffffffff0; 0x7) off=-16")),
            refused("EACCES").before("7.1").spectre_v1(true).key(S("R2 variable stack access prohibited for !root, var_off=(0x0; 0x7) off=-16")),
        ],
        ..RULE
    };
}
