//! Arithmetic: which operations a pointer allows, division by zero, shifts, 32-bit sub-registers.

use std::os::fd::AsFd;

use testkit::insn::{Alu, Asm, Jmp, Reg::*, Size};

use super::rule::{Pat::*, RULE, Rule, loads, lookup, refused};

rules! {
    /// Multiplying a pointer.
    pointer_multiply: Rule {
        insns: |_| Asm::new().alu64_imm(Alu::Mul, R1, 2).mov64_imm(R0, 0).exit(),
        expect: &[refused("EACCES").key(S("R1 pointer arithmetic with *= operator prohibited"))],
        ..RULE
    };

    /// Shifting a pointer.
    pointer_shift: Rule {
        insns: |_| Asm::new().alu64_imm(Alu::Lsh, R1, 1).mov64_imm(R0, 0).exit(),
        expect: &[refused("EACCES").key(S("R1 pointer arithmetic with <<= operator prohibited"))],
        ..RULE
    };

    /// Masking a pointer.
    pointer_bitwise_and: Rule {
        insns: |_| Asm::new().alu64_imm(Alu::And, R1, 1).mov64_imm(R0, 0).exit(),
        expect: &[refused("EACCES").key(S("R1 bitwise operator &= on pointer prohibited"))],
        ..RULE
    };

    /// Negating a pointer: root may (the result is a number).
    pointer_negate: Rule {
        insns: |_| Asm::new().alu64_imm(Alu::Neg, R1, 0).mov64_imm(R0, 0).exit(),
        expect: &[loads().returns(0)],
        ..RULE
    };

    /// Negating a pointer, unprivileged.
    pointer_negate_unpriv: Rule {
        insns: |_| Asm::new().alu64_imm(Alu::Neg, R1, 0).mov64_imm(R0, 0).exit(),
        unprivileged: true,
        expect: &[refused("EACCES").key(S("R1 pointer arithmetic prohibited"))],
        ..RULE
    };

    /// 32-bit arithmetic on a pointer.
    pointer_alu32: Rule {
        insns: |_| Asm::new().alu32_imm(Alu::Add, R1, 1).mov64_imm(R0, 0).exit(),
        expect: &[refused("EACCES").key(S("R1 32-bit pointer arithmetic prohibited"))],
        ..RULE
    };

    /// Adding two pointers.
    pointer_plus_pointer: Rule {
        insns: |_| Asm::new().alu64_reg(Alu::Add, R1, R10).mov64_imm(R0, 0).exit(),
        expect: &[refused("EACCES").key(S("R1 pointer += pointer prohibited"))],
        ..RULE
    };

    /// `fp - (fp - 8)`: root may subtract two pointers and gets a number, 8.
    pointer_minus_pointer: Rule {
        insns: |_| Asm::new()
            .mov64_reg(R2, R10)
            .add64_imm(R2, -8)
            .mov64_reg(R0, R10)
            .alu64_reg(Alu::Sub, R0, R2)
            .exit(),
        expect: &[loads().returns(8)],
        ..RULE
    };

    /// The same subtraction, unprivileged: the difference of two addresses is not for users.
    pointer_minus_pointer_unpriv: Rule {
        insns: |_| Asm::new()
            .mov64_reg(R2, R10)
            .add64_imm(R2, -8)
            .mov64_reg(R0, R10)
            .alu64_reg(Alu::Sub, R0, R2)
            .exit(),
        unprivileged: true,
        expect: &[refused("EACCES").key(S("R0 pointer -= pointer prohibited"))],
        ..RULE
    };

    /// `0 - fp`.
    scalar_minus_pointer: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 0).alu64_reg(Alu::Sub, R0, R10).exit(),
        expect: &[refused("EACCES").key(S("R0 tried to subtract pointer from scalar"))],
        ..RULE
    };

    /// A load through the context pointer moved by 4: context accesses are rewritten by field,
    /// so the pointer must be the one the program got.
    modified_context_dereference: Rule {
        insns: |_| Asm::new().add64_imm(R1, 4).ldx(Size::W, R0, R1, 0).exit(),
        expect: &[refused("EACCES").key(S("dereference of modified ctx ptr R1 off=4 disallowed"))],
        ..RULE
    };

    /// Division by a constant zero.
    division_by_zero_constant: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 1).alu64_imm(Alu::Div, R0, 0).exit(),
        expect: &[refused("EINVAL").key(S("div by zero"))],
        ..RULE
    };

    /// Division by a register holding zero: allowed, and the result is 0.
    division_by_zero_register: Rule {
        insns: |_| Asm::new()
            .mov64_imm(R0, 7)
            .mov64_imm(R1, 0)
            .alu64_reg(Alu::Div, R0, R1)
            .exit(),
        expect: &[loads().returns(0)],
        ..RULE
    };

    /// Modulo by a register holding zero: allowed, and the dividend is kept.
    modulo_by_zero_register: Rule {
        insns: |_| Asm::new()
            .mov64_imm(R0, 7)
            .mov64_imm(R1, 0)
            .alu64_reg(Alu::Mod, R0, R1)
            .exit(),
        expect: &[loads().returns(7)],
        ..RULE
    };

    /// A 64-bit shift by 64.
    shift_out_of_range: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 1).alu64_imm(Alu::Lsh, R0, 64).exit(),
        expect: &[refused("EINVAL").key(S("invalid shift 64"))],
        ..RULE
    };

    /// `w1 &= 1` zero-extends: the verifier knows r1 is 0 or 1 and lets it index the 8-byte map
    /// value (0x1234 & 1 = 0: the value's first byte, 0x34).
    alu32_bounds_index_map_value: Rule {
        insns: |f| lookup(f.array.as_fd())
            .jmp_imm(Jmp::Jeq, R0, 0, 5)
            .ldx(Size::DW, R1, R0, 0)
            .alu32_imm(Alu::And, R1, 1)
            .alu64_reg(Alu::Add, R0, R1)
            .ldx(Size::B, R0, R0, 0)
            .exit()
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[loads().returns(0x34)],
        ..RULE
    };
}
