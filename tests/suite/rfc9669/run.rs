//! Running one instruction's sub-cases: one program, one map, one test run.
//!
//! Every sub-case owns a few consecutive 8-byte cells of one array map's value: operands user
//! space writes before the run, results the program writes, memory words the instruction works on
//! in place. The program keeps the value's address in `R9` (a `BPF_PSEUDO_MAP_VALUE` load, 5.2+;
//! no sub-case writes `R9`), runs the sub-cases one after the other and returns [`DONE`]; cells a
//! sub-case should write start as [`POISON`].

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType, ProgramType};
use serde_json::{Value, json};
use testkit::insn::{ALU, ALU64, ATOMIC, Asm, Insn, LD, LDX, LOAD_ACQ, Reg::*, STX};
use testkit::raw_load::RawProgram;
use testkit::{Case, CaseError, CaseResult, LogLevel, OrError, floors, jit};

/// What the program returns when it ran to its end.
pub const DONE: u32 = 0x600d;
/// What a result cell holds before the run.
pub const POISON: u64 = 0x5ca1_ab1e_0ddb_a115;

/// The frame every program is test-run on (a socket filter sees it from byte 14 on): byte `i` is
/// `i * 37 + 11`, so the high bit varies.
pub const PACKET: [u8; 64] = {
    let mut p = [0u8; 64];
    let mut i = 0;
    while i < p.len() {
        p[i] = (i as u8).wrapping_mul(37).wrapping_add(11);
        i += 1;
    }
    p
};

/// RFC 9669's conformance groups (§2.4), and Linux's instructions beyond the RFC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Base32,
    Base64,
    Atomic32,
    Atomic64,
    Divmul32,
    Divmul64,
    Packet,
    /// Load-acquire and store-release (Linux 6.15+, not in RFC 9669).
    LinuxAtomicLoadStore,
}

impl Group {
    /// The floor of the group's name (`insn.base32`, …: from that release Linux has every
    /// instruction of the group).
    pub fn floor(name: &str) -> &'static str {
        match name {
            "base32" => "insn.base32",
            "base64" => "insn.base64",
            "atomic32" => "insn.atomic32",
            "atomic64" => "insn.atomic64",
            "divmul32" => "insn.divmul32",
            "divmul64" => "insn.divmul64",
            "packet" => "insn.packet",
            _ => "insn.load_acquire",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Group::Base32 => "base32",
            Group::Base64 => "base64",
            Group::Atomic32 => "atomic32",
            Group::Atomic64 => "atomic64",
            Group::Divmul32 => "divmul32",
            Group::Divmul64 => "divmul64",
            Group::Packet => "packet",
            Group::LinuxAtomicLoadStore => "linux.load_acquire_store_release",
        }
    }
}

/// One 8-byte cell of a sub-case.
#[derive(Clone, Debug)]
pub struct Cell {
    pub name: &'static str,
    /// Written before the run ([`POISON`] when `None`).
    pub before: Option<u64>,
    /// What the RFC says the cell holds after the run (not checked when `None`: an operand).
    pub after: Option<u64>,
    /// The value worked out by hand from the RFC's text (the results it states literally, §4.1's
    /// `x / 0 == 0`, `-13 % 3 == -1`, …, and others): checked against the model's `after` first.
    pub literal: Option<u64>,
}

impl Cell {
    /// An operand: written, not checked.
    pub fn operand(name: &'static str, value: u64) -> Self {
        Cell {
            name,
            before: Some(value),
            after: None,
            literal: None,
        }
    }

    /// A result the program writes.
    pub fn result(name: &'static str, expected: u64) -> Self {
        Cell {
            name,
            before: None,
            after: Some(expected),
            literal: None,
        }
    }

    /// Memory the instruction works on in place.
    pub fn memory(name: &'static str, before: u64, after: u64) -> Self {
        Cell {
            name,
            before: Some(before),
            after: Some(after),
            literal: None,
        }
    }

    /// The value worked out by hand for this cell.
    pub fn literal(mut self, value: u64) -> Self {
        self.literal = Some(value);
        self
    }
}

/// Where a sub-case's code and cells are.
pub struct At<'a> {
    /// Each cell's byte offset from `R9`, in the order of [`Sub::cells`].
    pub cells: Vec<i16>,
    /// The slot the sub-case's first instruction goes to.
    pub slot: usize,
    /// The slot the family's [`Family::tail`] starts at (after the main program's `exit`).
    pub tail: usize,
    /// The map whose value `R9` points to.
    pub map: BorrowedFd<'a>,
}

impl At<'_> {
    pub fn cell(&self, index: usize) -> i16 {
        self.cells[index]
    }
}

/// The instructions of one sub-case.
pub type Emit = Box<dyn Fn(&At) -> Asm>;

/// One encoding with one set of operands.
pub struct Sub {
    pub name: String,
    pub group: Group,
    /// The RFC 9669 section it checks.
    pub section: &'static str,
    /// The instruction under test.
    pub insn: Insn,
    pub cells: Vec<Cell>,
    pub emit: Emit,
}

/// One instruction (in both its widths, mostly): a case, one matrix row.
pub struct Family {
    /// `ADD (ALU, ALU64)`, `CMPXCHG (ATOMIC W, DW)`, ….
    pub instruction: String,
    /// The floor of the instruction (`insn.*`).
    pub feature: &'static str,
    /// How a kernel without it refuses the program: its verifier's key line matches this regex.
    pub absent: &'static str,
    /// What the test run returns.
    pub returns: u32,
    /// Subprograms after the main program's `exit`.
    pub tail: fn(&At) -> Asm,
    pub subs: Vec<Sub>,
}

impl Family {
    pub fn new(
        instruction: impl Into<String>,
        feature: &'static str,
        absent: &'static str,
    ) -> Self {
        Family {
            instruction: instruction.into(),
            feature,
            absent,
            returns: DONE,
            tail: |_| Asm::new(),
            subs: Vec::new(),
        }
    }
}

/// One instruction in both widths (`ALU` and `ALU64`, `JMP32` and `JMP`, `W` and `DW`): the
/// sub-cases of both, named `instruction`, judged by the floor of `newer` (the class that came
/// later, when they differ).
pub fn both(instruction: &str, older: Family, newer: Family) -> Family {
    let mut family = newer;
    family.instruction = instruction.to_owned();
    let subs = std::mem::take(&mut family.subs);
    family.subs = older.subs.into_iter().chain(subs).collect();
    family
}

/// `0x…` (JSON numbers lose precision past 2^53).
pub fn hex(value: u64) -> String {
    format!("{value:#x}")
}

/// The execution engine programs run on here.
pub fn engine() -> &'static str {
    if jit::enabled() { "jit" } else { "interpreter" }
}

/// Runs `family` as the calling test's case.
pub fn run(family: Family) {
    Case::run(ProgramType::SocketFilter, |case| {
        case.detail("rfc9669", summary(&family, None));
        check_literals(&family)?;
        let layout = Layout::of(&family);
        let map = layout.map()?;
        map.update(&0u32.to_ne_bytes(), &layout.initial(&family), MapFlags::ANY)
            .or_error("writing the operands")?;
        let asm = program(&family, &layout, map.as_fd());
        let load = RawProgram::new("rfc9669", ProgramType::SocketFilter, asm.to_bpf())
            .log_level(LogLevel::Stats)
            .test_input(&PACKET)
            .load();
        case.push_load(load.outcome.clone());
        case.detail("insns", asm.len());
        if !load.outcome.loaded {
            return Err(refused(&family, &load.outcome));
        }
        if !floors::has(family.feature, true) {
            return Err(floors::missing(family.feature, "loaded"));
        }
        let returned = match &load.ran {
            Some(Ok(value)) => *value,
            Some(Err(e)) => {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "BPF_PROG_TEST_RUN of the socket filter failed: {e}"
                )));
            }
            None => return Err(CaseError::Error(anyhow::anyhow!("the program was not run"))),
        };
        let value = map
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .or_error("reading the results back")?
            .ok_or_else(|| CaseError::Error(anyhow::anyhow!("the map has no element 0")))?;
        let observed = layout.observed(&family, &value);
        case.detail("rfc9669", summary(&family, Some((&observed, returned))));
        verdict(&family, &observed, returned)
    });
}

/// The hand-worked values against the model: a wrong model fails here, before the kernel is asked.
fn check_literals(family: &Family) -> CaseResult {
    for sub in &family.subs {
        for cell in &sub.cells {
            if let (Some(literal), Some(after)) = (cell.literal, cell.after)
                && literal != after
            {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "the reference model computes {} for {} of {:?}; by hand from RFC 9669 §{} it is {}",
                    hex(after),
                    cell.name,
                    sub.name,
                    sub.section,
                    hex(literal)
                )));
            }
        }
    }
    Ok(())
}

/// A kernel that refused the program: missing the instruction (its floor decides) or not.
fn refused(family: &Family, outcome: &testkit::LoadOutcome) -> CaseError {
    let message = outcome.message.clone().unwrap_or_default();
    let errno = outcome.errno.clone().unwrap_or_default();
    let absent = testkit::raw_load::regex_end(family.absent, &message)
        .unwrap_or_else(|e| panic!("absent regex {:?}: {e}", family.absent))
        .is_some();
    if absent {
        return floors::missing(
            family.feature,
            format!(
                "this kernel refused {}: {message} ({errno})",
                family.instruction
            ),
        );
    }
    CaseError::Fail(anyhow::anyhow!(
        "the kernel refused the program of {} for another reason than a missing instruction: \
         {message} ({errno})\nthe log:\n{}",
        family.instruction,
        outcome.log(&outcome.object)
    ))
}

/// Each sub-case's cells, one after the other from offset 0.
struct Layout {
    /// Per sub-case, its first cell's index.
    first: Vec<usize>,
    cells: usize,
}

impl Layout {
    fn of(family: &Family) -> Self {
        let mut first = Vec::with_capacity(family.subs.len());
        let mut cells = 0;
        for sub in &family.subs {
            first.push(cells);
            cells += sub.cells.len();
        }
        assert!(
            cells * 8 < i16::MAX as usize,
            "{cells} cells do not fit the offset field"
        );
        Layout {
            first,
            cells: cells.max(1),
        }
    }

    fn offsets(&self, sub: usize, count: usize) -> Vec<i16> {
        (0..count)
            .map(|c| (8 * (self.first[sub] + c)) as i16)
            .collect()
    }

    /// The array (one element) whose value holds every cell.
    fn map(&self) -> CaseResult<MapHandle> {
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let map = MapHandle::create(
            MapType::Array,
            Some("rfc9669"),
            4,
            (8 * self.cells) as u32,
            1,
            &opts,
        )
        .or_error("creating the cells' array")?;
        Ok(map)
    }

    fn initial(&self, family: &Family) -> Vec<u8> {
        let mut value = Vec::with_capacity(8 * self.cells);
        for cell in family.subs.iter().flat_map(|s| &s.cells) {
            value.extend_from_slice(&cell.before.unwrap_or(POISON).to_ne_bytes());
        }
        value.resize(8 * self.cells, 0);
        value
    }

    /// Each sub-case's cells after the run.
    fn observed(&self, family: &Family, value: &[u8]) -> Vec<Vec<u64>> {
        family
            .subs
            .iter()
            .enumerate()
            .map(|(s, sub)| {
                (0..sub.cells.len())
                    .map(|c| {
                        let at = 8 * (self.first[s] + c);
                        u64::from_ne_bytes(value[at..at + 8].try_into().expect("8 bytes"))
                    })
                    .collect()
            })
            .collect()
    }
}

/// `r6 = ctx; r9 = &value; <sub-cases>; r0 = returns; exit; <tail>`.
fn program(family: &Family, layout: &Layout, map: BorrowedFd<'_>) -> Asm {
    let at = |s: usize, slot: usize, tail: usize| At {
        cells: layout.offsets(s, family.subs[s].cells.len()),
        slot,
        tail,
        map,
    };
    let head = Asm::new().mov64_reg(R6, R1).ld_map_value(R9, map, 0);
    // Two passes: the first finds where the tail starts (no sub-case's length depends on it).
    let mut tail = 0;
    for pass in 0..2 {
        let mut asm = head.clone();
        for s in 0..family.subs.len() {
            let code = (family.subs[s].emit)(&at(s, asm.len(), tail));
            assert!(
                !writes_r9(&code),
                "{}: sub-case {:?} writes R9",
                family.instruction,
                family.subs[s].name
            );
            asm = asm.append(&code);
        }
        asm = asm.mov64_imm(R0, family.returns as i32).exit();
        if pass == 1 {
            let tail_code = (family.tail)(&at(0, asm.len(), tail));
            return asm.append(&tail_code);
        }
        tail = asm.len();
    }
    unreachable!()
}

/// Whether `asm` writes `R9` (the cells' address): as a destination, as a fetching atomic's
/// source, or by a load-acquire.
fn writes_r9(asm: &Asm) -> bool {
    asm.insns().iter().any(|i| {
        let class = i.code & 0x07;
        let writes_dst = matches!(class, ALU | ALU64 | LDX | LD) && i.code != 0;
        let atomic = class == STX && i.code & 0xe0 == ATOMIC;
        (writes_dst && i.dst == 9)
            || (atomic && i.imm == LOAD_ACQ && i.dst == 9)
            || (atomic && i.imm != LOAD_ACQ && i.imm & 1 == 1 && i.src == 9)
    })
}

/// The case's `details.rfc9669`: the instruction, its groups and sections, and every sub-case
/// with its operands, expected and (after the run) observed values.
fn summary(family: &Family, observed: Option<(&Vec<Vec<u64>>, u32)>) -> Value {
    let mut groups: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut sections: Vec<&str> = Vec::new();
    let mut subs = Vec::with_capacity(family.subs.len());
    for (s, sub) in family.subs.iter().enumerate() {
        let seen = observed.map(|(o, _)| &o[s]);
        let ok = seen.map(|seen| mismatches(sub, seen).is_empty());
        let entry = groups.entry(sub.group.name()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(ok == Some(false));
        if !sections.contains(&sub.section) {
            sections.push(sub.section);
        }
        let values = |pick: &dyn Fn(usize, &Cell) -> Option<u64>| -> Value {
            sub.cells
                .iter()
                .enumerate()
                .filter_map(|(c, cell)| {
                    pick(c, cell).map(|v| (cell.name.to_owned(), json!(hex(v))))
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        subs.push(json!({
            "name": sub.name,
            "group": sub.group.name(),
            "section": sub.section,
            "insn": sub.insn.to_string(),
            "operands": values(&|_, cell| cell.before),
            "expected": values(&|_, cell| cell.after),
            "observed": seen.map(|seen| values(&|c, cell| cell.after.map(|_| seen[c]))),
            "ok": ok,
        }));
    }
    let group_names: Vec<&str> = groups.keys().copied().collect();
    json!({
        "instruction": family.instruction,
        "group": if group_names.len() == 1 { json!(group_names[0]) } else { json!(group_names) },
        "groups": groups
            .iter()
            .map(|(g, (n, failed))| {
                let floor = Group::floor(g);
                (g.to_string(), json!({"subcases": n, "failed": failed, "floor": floor, "since": floors::since(floor)}))
            })
            .collect::<serde_json::Map<_, _>>(),
        "sections": sections,
        "feature": family.feature,
        "engine": engine(),
        "subcases": family.subs.len(),
        "failed": observed.map(|(o, _)| family.subs.iter().zip(o).filter(|(s, o)| !mismatches(s, o).is_empty()).count()),
        "returned": observed.map(|(_, r)| r),
        "results": subs,
    })
}

/// The cells of `sub` whose observed value is not the expected one.
fn mismatches<'a>(sub: &'a Sub, observed: &[u64]) -> Vec<(&'a Cell, u64)> {
    sub.cells
        .iter()
        .zip(observed)
        .filter(|(cell, seen)| cell.after.is_some_and(|after| after != **seen))
        .map(|(cell, &seen)| (cell, seen))
        .collect()
}

/// `fail` listing every sub-case that differs from the RFC, with operands, expected and observed.
fn verdict(family: &Family, observed: &[Vec<u64>], returned: u32) -> CaseResult {
    let mut lines = Vec::new();
    if returned != family.returns {
        lines.push(format!(
            "the program returned {returned:#x}, not {:#x}: it did not run to its end",
            family.returns
        ));
    }
    for (sub, seen) in family.subs.iter().zip(observed) {
        let wrong = mismatches(sub, seen);
        if wrong.is_empty() {
            continue;
        }
        let operands: Vec<String> = sub
            .cells
            .iter()
            .filter_map(|c| c.before.map(|v| format!("{}={}", c.name, hex(v))))
            .collect();
        let differs: Vec<String> = wrong
            .iter()
            .map(|(cell, seen)| {
                format!(
                    "{}: expected {}, observed {}",
                    cell.name,
                    hex(cell.after.unwrap_or_default()),
                    hex(*seen)
                )
            })
            .collect();
        lines.push(format!(
            "{} [{} §{}] {}; operands {}; {}",
            sub.name,
            sub.group.name(),
            sub.section,
            sub.insn,
            operands.join(" "),
            differs.join("; ")
        ));
    }
    if lines.is_empty() {
        return Ok(());
    }
    Err(CaseError::Fail(anyhow::anyhow!(
        "{} of {} sub-cases of {} differ from RFC 9669 on this kernel ({}):\n  {}",
        lines.len(),
        family.subs.len(),
        family.instruction,
        engine(),
        lines.join("\n  ")
    )))
}
