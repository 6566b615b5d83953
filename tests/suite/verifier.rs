//! The verifier catalogue: one case per rule the verifier enforces, each a socket filter written as
//! BPF instructions (`harness::insn`), so its log does not depend on the compiler.
//!
//! Every case loads its program through `Case::load_raw` (the harness's own log buffer), asserts the
//! verdict, the errno and a stable key phrase of the verifier's complaint (the exact wording differs
//! between kernels), and snapshots the whole log for the running kernel
//! (`tests/snapshots/<kernel>/verifier__<case>.snap`, at log level 1, or 2 where marked). Programs
//! the verifier accepts are also run once with `BPF_PROG_TEST_RUN` and their return value checked.
//!
//! Rules that need a newer verifier (bounded loops, 5.3) are judged against the feature's floor
//! when the kernel refuses them the old way (a back-edge): `unsupported` on older kernels, with
//! what the kernel said in the reason and in the snapshot, and a `fail` on newer ones.

use std::os::fd::AsFd;

use harness::insn::{Asm, Jmp, Reg::*, Size};
use harness::raw_load::{self, RawProgram};
use harness::{Case, CaseError, LogLevel, OrError, floors};
use libbpf_rs::libbpf_sys::{self, BPF_FUNC_map_lookup_elem, BPF_FUNC_xdp_adjust_head};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType, ProgramType};

/// A packet for the socket filters that run (test runs need at least an Ethernet header).
const PACKET: [u8; 64] = [0; 64];
/// What user space stores in the fixture map's only value.
const STORED: u64 = 0x1234;

/// What a rule expects of the kernel.
enum Verdict {
    /// Loads; a test run returns this value.
    Accepted { returns: u32 },
    /// Refused with this errno.
    Refused { errno: &'static str },
}

/// One catalogue entry.
struct Rule {
    program: Asm,
    level: LogLevel,
    /// The first log buffer's size; the harness grows it on ENOSPC.
    log_size: usize,
    verdict: Verdict,
    /// Phrases the key line (the verifier's last complaint) must contain, on every kernel; for an
    /// accepted program, phrases of its log.
    key: &'static [&'static str],
    /// Phrases the whole log must contain besides (an earlier line of a two-line complaint).
    log_has: &'static [&'static str],
    /// The verifier feature the rule needs (a floor id); kernels without it refuse the program
    /// for its back-edge.
    needs: Option<&'static str>,
    /// The errno the first load must get, before the harness grew the log buffer and retried.
    first_attempt: Option<&'static str>,
}

impl Rule {
    fn new(program: Asm, verdict: Verdict, key: &'static [&'static str]) -> Self {
        Rule {
            program,
            level: LogLevel::Verbose,
            log_size: 1 << 20,
            verdict,
            key,
            log_has: &[],
            needs: None,
            first_attempt: None,
        }
    }

    fn level(mut self, level: LogLevel) -> Self {
        self.level = level;
        self
    }

    fn log_has(mut self, phrases: &'static [&'static str]) -> Self {
        self.log_has = phrases;
        self
    }

    fn needs(mut self, feature: &'static str) -> Self {
        self.needs = Some(feature);
        self
    }
}

/// Maps for the rules about map values: an array and a hash (4-byte key, one 8-byte value
/// holding `STORED` at key 0).
struct Fixture {
    array: MapHandle,
    hash: MapHandle,
}

impl Fixture {
    fn new() -> Result<Self, CaseError> {
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let create = |ty, name| -> Result<MapHandle, CaseError> {
            let map = MapHandle::create(ty, Some(name), 4, 8, 1, &opts)
                .or_error("creating a fixture map")?;
            map.update(&0u32.to_ne_bytes(), &STORED.to_ne_bytes(), MapFlags::ANY)
                .or_error("writing a fixture map")?;
            Ok(map)
        };
        Ok(Fixture {
            array: create(MapType::Array, "vals")?,
            hash: create(MapType::Hash, "table")?,
        })
    }

    /// `r0 = bpf_map_lookup_elem(map, &(u32){0})`: a pointer to the value, or NULL.
    fn lookup(map: &MapHandle) -> Asm {
        Asm::new()
            .st_imm(Size::W, R10, -4, 0)
            .mov64_reg(R2, R10)
            .add64_imm(R2, -4)
            .ld_map_fd(R1, map.as_fd())
            .call(BPF_FUNC_map_lookup_elem)
    }
}

fn refused(errno: &'static str) -> Verdict {
    Verdict::Refused { errno }
}

// ---- the rules ----

/// A jump to itself whose condition always holds: the verifier finds the same state twice.
fn rule_back_edge_rejected(_: &Fixture) -> Rule {
    let program = Asm::new()
        .mov64_imm(R0, 0)
        .jmp_imm(Jmp::Jne, R0, 1, -1) // 1: if r0 != 1 goto 1
        .exit();
    // 5.3+ walks loops and detects this one; older kernels refuse every back-edge in check_cfg.
    let key: &[&str] = if floors::reached("verifier.bounded_loops") {
        &["infinite loop detected at insn 1"]
    } else {
        &["back-edge from insn 1 to 1"]
    };
    Rule::new(program, refused("EINVAL"), key)
}

/// `r0 = 0; do r0 += 1 while (r0 < 10)`: the verifier walks all ten iterations (5.3+).
fn rule_bounded_loop_accepted(_: &Fixture) -> Rule {
    Rule::new(
        counting_loop(10),
        Verdict::Accepted { returns: 10 },
        &["processed"],
    )
    .level(LogLevel::Full)
    .needs("verifier.bounded_loops")
}

fn counting_loop(to: i32) -> Asm {
    Asm::new()
        .mov64_imm(R0, 0)
        .add64_imm(R0, 1)
        .jmp_imm(Jmp::Jlt, R0, to, -2)
        .exit()
}

/// Instructions after the last `exit` that no path reaches.
fn rule_unreachable_instruction(_: &Fixture) -> Rule {
    let program = Asm::new().mov64_imm(R0, 0).exit().mov64_imm(R0, 1).exit();
    Rule::new(program, refused("EINVAL"), &["unreachable insn 2"])
}

/// A jump past the end of the program.
fn rule_jump_out_of_range(_: &Fixture) -> Rule {
    let program = Asm::new().mov64_imm(R0, 0).ja(5).exit();
    Rule::new(
        program,
        refused("EINVAL"),
        &["jump out of range from insn 1 to 7"],
    )
}

/// The program falls off its end.
fn rule_last_insn_not_exit(_: &Fixture) -> Rule {
    let program = Asm::new().mov64_imm(R0, 0).mov64_imm(R0, 1);
    Rule::new(
        program,
        refused("EINVAL"),
        &["last insn is not an exit or jmp"],
    )
}

/// R2 is never written before it is read (only R1, the context, and R10 are set on entry).
fn rule_uninit_register_read(_: &Fixture) -> Rule {
    let program = Asm::new().mov64_reg(R0, R2).exit();
    Rule::new(program, refused("EACCES"), &["R2 !read_ok"])
}

/// A store 520 bytes below the frame pointer: the stack is 512 bytes.
fn rule_stack_out_of_bounds(_: &Fixture) -> Rule {
    let program = Asm::new()
        .mov64_imm(R0, 0)
        .stx(Size::DW, R10, -520, R0)
        .exit();
    // "invalid stack off=-520 size=8" on older kernels, "invalid write to stack R10 off=-520 size=8" on newer.
    Rule::new(program, refused("EACCES"), &["stack", "off=-520 size=8"])
}

/// A read of 8 bytes at offset 8 of an 8-byte array value, after the NULL check.
fn rule_map_value_out_of_bounds(f: &Fixture) -> Rule {
    let program = Fixture::lookup(&f.array)
        .jmp_imm(Jmp::Jeq, R0, 0, 1)
        .ldx(Size::DW, R0, R0, 8)
        .mov64_imm(R0, 0)
        .exit();
    Rule::new(
        program,
        refused("EACCES"),
        &["outside of the allowed memory range"],
    )
    .log_has(&["invalid access to map value, value_size=8 off=8 size=8"])
}

/// A hash lookup and an in-bounds read, with the NULL check: accepted, returns what user space
/// stored.
fn rule_map_value_checked_accepted(f: &Fixture) -> Rule {
    let program = Fixture::lookup(&f.hash)
        .jmp_imm(Jmp::Jeq, R0, 0, 2)
        .ldx(Size::DW, R0, R0, 0)
        .exit()
        .mov64_imm(R0, 0)
        .exit();
    let returns = STORED as u32;
    Rule::new(program, Verdict::Accepted { returns }, &["processed"])
}

/// A hash lookup's result dereferenced without the NULL check. (A hash map: newer kernels know
/// that an array lookup with a constant key in range cannot return NULL.)
fn rule_null_map_value_deref(f: &Fixture) -> Rule {
    let program = Fixture::lookup(&f.hash)
        .ldx(Size::DW, R0, R0, 0)
        .mov64_imm(R0, 0)
        .exit();
    Rule::new(
        program,
        refused("EACCES"),
        &["R0 invalid mem access 'map_value_or_null'"],
    )
    .level(LogLevel::Full)
}

/// An XDP-only helper called from a socket filter ("unknown func" on older kernels, "program of
/// this type cannot use helper" on newer).
fn rule_invalid_helper_for_prog_type(_: &Fixture) -> Rule {
    let program = Asm::new()
        .mov64_imm(R2, 0)
        .call(BPF_FUNC_xdp_adjust_head)
        .mov64_imm(R0, 0)
        .exit();
    Rule::new(program, refused("EINVAL"), &["bpf_xdp_adjust_head#44"])
}

/// A loop of a million iterations: the verifier gives up after a million processed instructions.
/// At level 1 the log would hold every one of them, so this rule logs statistics only.
fn rule_too_many_processed_insns(_: &Fixture) -> Rule {
    Rule::new(
        counting_loop(1_000_000),
        refused("E2BIG"),
        &["BPF program is too large. Processed 1000001 insn"],
    )
    .level(LogLevel::Stats)
    .needs("verifier.bounded_loops")
}

/// A valid program at log level 2 with a 128-byte log buffer: the first load answers ENOSPC, the
/// harness grows the buffer and the retry loads. (Level 2: newer kernels keep only the statistics
/// of an accepted program's level-1 log.)
fn rule_log_buffer_too_small(_: &Fixture) -> Rule {
    let mut rule = Rule::new(
        Asm::new().mov64_imm(R0, 3).exit(),
        Verdict::Accepted { returns: 3 },
        &["(b7) r0 = 3", "processed 2 insns"],
    )
    .level(LogLevel::Full);
    rule.log_size = raw_load::MIN_LOG_SIZE;
    rule.first_attempt = Some("ENOSPC");
    rule
}

/// One test per rule, named after it (the case id is `verifier::<rule>`).
macro_rules! catalogue {
    ($($name:ident => $rule:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            catalogue(stringify!($name), $rule);
        }
    )*};
}

catalogue! {
    back_edge_rejected => rule_back_edge_rejected,
    bounded_loop_accepted => rule_bounded_loop_accepted,
    unreachable_instruction => rule_unreachable_instruction,
    jump_out_of_range => rule_jump_out_of_range,
    last_insn_not_exit => rule_last_insn_not_exit,
    uninit_register_read => rule_uninit_register_read,
    stack_out_of_bounds => rule_stack_out_of_bounds,
    map_value_out_of_bounds => rule_map_value_out_of_bounds,
    map_value_checked_accepted => rule_map_value_checked_accepted,
    null_map_value_deref => rule_null_map_value_deref,
    invalid_helper_for_prog_type => rule_invalid_helper_for_prog_type,
    too_many_processed_insns => rule_too_many_processed_insns,
    log_buffer_too_small => rule_log_buffer_too_small,
}

fn catalogue(name: &str, rule: fn(&Fixture) -> Rule) {
    Case::run(
        &format!("verifier::{name}"),
        ProgramType::SocketFilter,
        |case| {
            let fixture = Fixture::new()?;
            let rule = rule(&fixture);
            let program = RawProgram::new(name, ProgramType::SocketFilter, rule.program.to_bpf())
                .log_level(rule.level)
                .log_size(rule.log_size);
            let load = case.load_raw(&program);
            let outcome = &load.outcome;
            case.detail("insns", rule.program.len());
            case.detail("attempts", &load.attempts);

            if let Some(feature) = rule.needs {
                let message = outcome.message.as_deref().unwrap_or_default();
                // Without the feature, check_cfg refuses every back-edge.
                let back_edge = !outcome.loaded && message.contains("back-edge");
                if !floors::has(feature, !back_edge) {
                    return Err(floors::missing(
                        feature,
                        format!("this kernel refused it: {message}"),
                    ));
                }
            }

            match rule.verdict {
                Verdict::Accepted { returns } => {
                    assert!(
                        outcome.loaded,
                        "refused ({:?}): {:?}",
                        outcome.errno, outcome.message
                    );
                    for phrase in rule.key {
                        assert!(
                            load.log().contains(phrase),
                            "the log lacks {phrase:?}:\n{}",
                            load.log()
                        );
                    }
                    let value = raw_load::test_run(load.fd()?, &PACKET)?;
                    case.detail("test_run_returned", value);
                    assert_eq!(value, returns, "the program returned {value}");
                }
                Verdict::Refused { errno } => {
                    assert!(!outcome.loaded, "the verifier accepted it:\n{}", load.log());
                    assert_eq!(
                        outcome.errno.as_deref(),
                        Some(errno),
                        "{:?}",
                        outcome.message
                    );
                    let message = outcome.message.as_deref().unwrap_or_default();
                    for phrase in rule.key {
                        assert!(
                            message.contains(phrase),
                            "the key line {message:?} lacks {phrase:?}"
                        );
                    }
                    for phrase in rule.log_has {
                        assert!(
                            load.log().contains(phrase),
                            "the log lacks {phrase:?}:\n{}",
                            load.log()
                        );
                    }
                }
            }
            if let Some(errno) = rule.first_attempt {
                assert_eq!(
                    load.attempts[0].errno.as_deref(),
                    Some(errno),
                    "the first load, with a {}-byte log buffer",
                    rule.log_size
                );
                assert!(load.log_retries >= 1, "the harness did not retry");
            }
            Ok(())
        },
    );
}
