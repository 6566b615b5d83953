//! Instruction-set versions (`programs/src/bpf/isa.bpf.c`): one socket filter compiled with
//! `-mcpu=v1`, `v2`, `v3` and `v4` (build.rs variants `isa_v1`, `isa` (v2), `isa_v3`, `isa_v4`).
//!
//! Each case first checks that the object really uses its version's instructions (counted in the
//! compiled program: jlt/jle & co. from v2, 32-bit ALU and jmp32 from v3, sign-extending moves and
//! loads and bswap from v4), then loads it on the running kernel. A version the kernel accepts must
//! compute the same value as every other (one `BPF_PROG_TEST_RUN` on a fixed packet, checked against
//! the same computation in Rust). A refusal is recorded with the kernel's words — or, when the
//! kernel refused it with `EINVAL` before the verifier wrote a line, with that said plainly, since
//! an empty log is exactly what a too-new instruction set looks like on an old kernel. A refusal is
//! judged against the version's floor (`isa.v1`…`isa.v4` in kernels/floors.toml; v3: 5.1, v4: 6.6):
//! `unsupported` on an older kernel, a `fail` on a newer one. Each case's outcome is snapshotted
//! per kernel.

use std::mem::MaybeUninit;

use harness::load::{LogLevel, load_skel};
use harness::{Case, CaseError, CaseResult, floors};
use libbpf_rs::libbpf_sys::bpf_insn;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ProgramInput, ProgramType};
use rstest::rstest;
use serde_json::{Value, json};

/// A frame whose bytes (after the 14-byte Ethernet header a socket filter does not see) have the
/// top bit set and clear, so sign extension matters.
fn packet() -> [u8; 64] {
    std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11))
}

/// What `mix()` in isa.bpf.c computes over the 16 bytes after the Ethernet header.
fn expected(packet: &[u8; 64]) -> u32 {
    let mut acc: u32 = 0x1234_5678;
    for &byte in &packet[14..30] {
        let v = i64::from(byte as i8);
        acc = acc.swap_bytes() ^ (v.wrapping_mul(31) as u32);
        if (acc as i32) < 0 {
            acc = acc.wrapping_add(7);
        }
        if acc < 0x1000 {
            acc |= 0x80;
        }
    }
    acc & 0x7fff_ffff
}

/// Instructions of each kind the versions differ in.
#[derive(Debug, Default)]
struct Encoding {
    total: usize,
    /// `jlt`/`jle`/`jslt`/`jsle` (v2).
    jmp_ext: usize,
    /// 32-bit ALU (`BPF_ALU` class but for byte-order conversions; v3 uses it throughout).
    alu32: usize,
    /// `BPF_JMP32` class (v3).
    jmp32: usize,
    /// Sign-extending `mov` (v4).
    movsx: usize,
    /// Sign-extending loads (`BPF_MEMSX`, v4).
    ldsx: usize,
    /// Unconditional byte swaps (`BPF_ALU64 | BPF_END`, v4).
    bswap: usize,
}

impl Encoding {
    fn of(insns: &[bpf_insn]) -> Self {
        let mut e = Encoding {
            total: insns.len(),
            ..Default::default()
        };
        for i in insns {
            let (class, op) = (i.code & 0x07, i.code & 0xf0);
            match class {
                0x05 if matches!(op, 0xa0..=0xd0) => e.jmp_ext += 1,
                0x06 => e.jmp32 += 1,
                // BPF_ALU | BPF_END (be16/be32/be64) exists in every version.
                0x04 if op != 0xd0 => e.alu32 += 1,
                0x01 if i.code & 0xe0 == 0x80 => e.ldsx += 1,
                _ => {}
            }
            if matches!(i.code, 0xbc | 0xbf) && i.off != 0 {
                e.movsx += 1;
            }
            if i.code == 0xd7 {
                e.bswap += 1;
            }
        }
        e
    }

    fn to_json(&self) -> Value {
        json!({
            "total": self.total,
            "jmp_ext": self.jmp_ext,
            "alu32": self.alu32,
            "jmp32": self.jmp32,
            "movsx": self.movsx,
            "ldsx": self.ldsx,
            "bswap": self.bswap,
        })
    }

    /// Whether the object uses what `mcpu` introduced (and nothing newer).
    fn matches(&self, mcpu: &str) -> bool {
        let v4 = self.movsx + self.ldsx + self.bswap;
        let v3 = self.alu32 + self.jmp32;
        match mcpu {
            "v1" => self.jmp_ext == 0 && v3 == 0 && v4 == 0,
            "v2" => self.jmp_ext > 0 && v3 == 0 && v4 == 0,
            "v3" => self.jmp32 > 0 && self.alu32 > 0 && v4 == 0,
            _ => self.jmp32 > 0 && self.ldsx > 0 && self.bswap > 0,
        }
    }
}

fn clang_major() -> &'static str {
    programs::CLANG_VERSION
        .split("version ")
        .nth(1)
        .and_then(|v| v.split('.').next())
        .unwrap_or("unknown")
}

/// Loads the variant of instruction set `isa` (`isa.v4`), checks it and snapshots the outcome.
fn check<'obj, S: OpenSkel<'obj>>(
    case: &mut Case,
    isa: &str,
    open: S,
    run: impl FnOnce(&mut Case, &S::Output) -> CaseResult<u32>,
) -> Result<(), CaseError>
where
    S::Output: 'obj,
{
    let mcpu = isa.strip_prefix("isa.").expect("an isa.* feature id");
    case.set_mcpu(mcpu);
    let insns: Vec<bpf_insn> = open
        .open_object()
        .progs()
        .next()
        .map(|p| p.insns().to_vec())
        .unwrap_or_default();
    let encoding = Encoding::of(&insns);
    case.detail("encoding", encoding.to_json());
    assert!(
        encoding.matches(mcpu),
        "the -mcpu={mcpu} object does not use the {mcpu} instructions: {encoding:?}"
    );

    let (result, outcome) = load_skel(open, LogLevel::Stats);
    if outcome.loaded && !floors::has(isa, true) {
        return Err(floors::missing(isa, "loaded"));
    }
    let snapshot_name = case.snapshot_name("mix");
    case.push_load(outcome.clone());
    let log = outcome.log("mix");
    let empty_log = !outcome.loaded && log.is_empty();
    let verifier_log = match (outcome.loaded, log.is_empty()) {
        (true, _) => "statistics",
        (false, true) => "empty: refused before the verifier ran",
        (false, false) => "the verifier's complaint",
    };
    case.detail("verifier_log_empty", empty_log);
    let returned = match &result {
        Ok(skel) => Some(run(case, skel)?),
        Err(_) => None,
    };
    let needs_kernel = floors::since(isa).unwrap_or("?");
    let message = if empty_log {
        Some(format!(
            "refused with {} and an empty verifier log",
            outcome.errno.as_deref().unwrap_or("an error")
        ))
    } else {
        outcome.message.clone()
    };
    // The object's encoding and what the running kernel made of it.
    let view = json!({
        "mcpu": mcpu,
        "compiler": format!("clang {}", clang_major()),
        "needs_kernel": needs_kernel,
        "encoding": encoding.to_json(),
        "loaded": outcome.loaded,
        "errno": outcome.errno,
        "message": message,
        "verifier_log": verifier_log,
        "processed_insns": outcome
            .programs
            .get("mix")
            .and_then(|p| p.stats.as_ref())
            .map(|s| s.processed_insns),
        "returned": returned,
    });
    case.snapshot(&snapshot_name, &view);

    match returned {
        Some(value) => {
            case.detail("returned", value);
            assert_eq!(
                value,
                expected(&packet()),
                "-mcpu={mcpu} computed something else"
            );
            Ok(())
        }
        None => Err(floors::missing(
            isa,
            format!(
                "this kernel refused -mcpu={mcpu}: {}",
                message.unwrap_or_default()
            ),
        )),
    }
}

/// What `prog` returns for [`packet`], and (recorded on the case) what a run of it costs.
fn test_run(case: &mut Case, prog: &libbpf_rs::ProgramMut<'_>) -> CaseResult<u32> {
    let packet = packet();
    let input = ProgramInput {
        data_in: Some(&packet),
        ..Default::default()
    };
    let returned = harness::test_run::run("socket_filter", prog, input)?.return_value;
    harness::test_run::measure(case, prog, &packet, None)?;
    Ok(returned)
}

#[rstest]
#[case::v1("v1")]
#[case::v2("v2")]
#[case::v3("v3")]
#[case::v4("v4")]
fn mcpu(#[case] version: &str) {
    Case::run(ProgramType::SocketFilter, |case| {
        let mut object = MaybeUninit::uninit();
        match version {
            "v1" => {
                let open = programs::isa_v1::IsaV1SkelBuilder::default().open(&mut object)?;
                check(case, "isa.v1", open, |case, s| test_run(case, &s.progs.mix))
            }
            "v2" => {
                let open = programs::isa::IsaSkelBuilder::default().open(&mut object)?;
                check(case, "isa.v2", open, |case, s| test_run(case, &s.progs.mix))
            }
            "v3" => {
                let open = programs::isa_v3::IsaV3SkelBuilder::default().open(&mut object)?;
                check(case, "isa.v3", open, |case, s| test_run(case, &s.progs.mix))
            }
            _ => {
                let open = programs::isa_v4::IsaV4SkelBuilder::default().open(&mut object)?;
                check(case, "isa.v4", open, |case, s| test_run(case, &s.progs.mix))
            }
        }
    });
}
