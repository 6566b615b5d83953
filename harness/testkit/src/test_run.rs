//! `BPF_PROG_TEST_RUN`: the runner of the modules' test-run tables ([`Row`]), which errors mean the
//! kernel has no test run for a type (judged against its floor, `test_run.<type>`), what one run
//! costs ([`measure`]), and the check that a traffic-only type still has none.

use libbpf_rs::{ProgramInput, ProgramMut, ProgramOutput, ProgramType};
use record::RunCost;

use crate::errno::{self, ENOTSUPP};
use crate::packet::hex;
use crate::{Case, CaseError, CaseResult, floors};

/// Maps a failed test run of a program of type `ty` (the kernel's name: `socket_filter`,
/// `sched_cls`, …): `ENOTSUPP`/`EOPNOTSUPP` (the kernel cannot run this type) is the floor's
/// verdict on `test_run.<ty>`, anything else a failure.
pub fn error(ty: &str, e: libbpf_rs::Error) -> CaseError {
    if let Some(ENOTSUPP | libc::EOPNOTSUPP) = errno::of_libbpf(&e) {
        floors::missing(
            &format!("test_run.{ty}"),
            format!("BPF_PROG_TEST_RUN of a {ty} program answered {e:#}"),
        )
    } else {
        CaseError::Fail(anyhow::anyhow!("BPF_PROG_TEST_RUN failed: {e:#}"))
    }
}

/// Runs `prog`, of type `ty`, once with `input`; failures as [`error`]. The fault switch
/// (`BPFCONF_FAULT_MISSING=test_run.<ty>`) stands in for an `ENOTSUPP`.
pub fn run<'dat>(
    ty: &str,
    prog: &ProgramMut<'_>,
    input: ProgramInput<'dat>,
) -> CaseResult<ProgramOutput<'dat>> {
    let id = format!("test_run.{ty}");
    if !floors::has(&id, true) {
        return Err(floors::missing(&id, "not run"));
    }
    prog.test_run(input).map_err(|e| error(ty, e))
}

/// Runs the raw tracepoint program `prog` once with `args` as its arguments (`ctx->args[i]`, at
/// most 12) and returns its return value; on `cpu` (`BPF_F_TEST_RUN_ON_CPU`, which must be
/// online) or, with `None`, on the calling thread's CPU.
pub fn raw_tp(prog: &ProgramMut<'_>, args: &[u64], cpu: Option<u32>) -> CaseResult<u32> {
    let mut context: Vec<u8> = args.iter().flat_map(|a| a.to_ne_bytes()).collect();
    let input = ProgramInput {
        context_in: Some(&mut context),
        cpu: cpu.unwrap_or(0),
        flags: if cpu.is_some() {
            libbpf_rs::libbpf_sys::BPF_F_TEST_RUN_ON_CPU
        } else {
            0
        },
        ..Default::default()
    };
    Ok(run("raw_tracepoint", prog, input)?.return_value)
}

/// Runs `prog` `repeat` times on `data` on each of `cpus` at the same time: one thread per CPU,
/// pinned to it (a test run runs on its caller's CPU), all released together. Every run must
/// return `retval`.
pub fn concurrently_on(
    prog: &ProgramMut<'_>,
    data: &[u8],
    repeat: u32,
    cpus: &[u32],
    retval: u32,
) -> CaseResult {
    use std::os::fd::AsFd;
    let fd = prog.as_fd();
    let start = std::sync::Barrier::new(cpus.len());
    let answers: Vec<Result<u32, String>> = std::thread::scope(|scope| {
        let threads: Vec<_> = cpus
            .iter()
            .map(|&cpu| {
                let start = &start;
                scope.spawn(move || {
                    // Every thread reaches the barrier, pinned or not, so none waits forever.
                    let pinned = crate::cpus::pin_thread(cpu as usize)
                        .map_err(|e| format!("pinning a thread to CPU {cpu}: {e}"));
                    start.wait();
                    pinned?;
                    let run = loader::prog::TestRun {
                        data_in: Some(data),
                        repeat,
                        ..Default::default()
                    };
                    loader::prog::test_run(fd, run)
                        .map(|ran| ran.retval)
                        .map_err(|e| std::io::Error::from(e).to_string())
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("the thread panicked".into()))
            })
            .collect()
    });
    for (cpu, answer) in cpus.iter().zip(answers) {
        match answer {
            Ok(r) if r == retval => {}
            Ok(r) => {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "the runs on CPU {cpu} returned {r}, not {retval}"
                )));
            }
            Err(e) => {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "BPF_PROG_TEST_RUN on CPU {cpu}: {e}"
                )));
            }
        }
    }
    Ok(())
}

/// Rounds of a run-cost measurement; the cost is their median.
const ROUNDS: usize = 5;
/// What one round aims to last, in ns: long against the clock's and the syscall's cost, short
/// under emulation (a row's measurement costs about `ROUNDS` times this).
const ROUND_NS: u64 = 2_000_000;
/// Runs of the calibration round.
const CALIBRATION: u32 = 64;

/// Measures what one test run of `prog` on `data` (and `context`) costs and records it on the
/// case under the program's name: a calibration round of [`CALIBRATION`] runs sizes the kernel's
/// `repeat` so that a round lasts about [`ROUND_NS`], then [`ROUNDS`] rounds give the kernel's
/// average ns per run each. Nothing is copied out; state the program keeps (counters, the packet
/// it rewrites) goes on changing with every run, so measure after the case has read it.
pub fn measure(
    case: &mut Case,
    prog: &ProgramMut<'_>,
    data: &[u8],
    context: Option<&[u8]>,
) -> CaseResult<RunCost> {
    let round = |repeat: u32| -> CaseResult<f64> {
        let mut context = context.map(<[u8]>::to_vec);
        let input = ProgramInput {
            data_in: Some(data),
            context_in: context.as_deref_mut(),
            repeat,
            ..Default::default()
        };
        let output = prog
            .test_run(input)
            .map_err(|e| CaseError::Fail(anyhow::anyhow!("measuring the run cost: {e:#}")))?;
        Ok(output.duration.as_nanos() as f64)
    };
    let first = round(CALIBRATION)?;
    let repeat = (ROUND_NS as f64 / first.max(1.0)).clamp(f64::from(CALIBRATION), 1e6) as u32;
    let mut ns = (0..ROUNDS)
        .map(|_| round(repeat))
        .collect::<CaseResult<Vec<f64>>>()?;
    ns.sort_by(f64::total_cmp);
    let cost = RunCost {
        ns_per_run_median: ns[ROUNDS / 2],
        min: ns[0],
        max: ns[ROUNDS - 1],
        rounds: ROUNDS as u32,
        repeat,
        emulated: crate::cpus::emulated(),
    };
    case.run_cost(&prog.name().to_string_lossy(), cost.clone());
    Ok(cost)
}

/// Runs `prog` once on `data` for a type the kernel has no test run for: records the kernel's
/// answer as the detail `test_run` and fails unless it is `ENOTSUPP` — if the kernel ever runs the
/// type, it should get test-run cases.
pub fn assert_not_implemented(
    case: &mut Case,
    prog: &libbpf_rs::ProgramMut<'_>,
    data: &[u8],
) -> CaseResult {
    let input = ProgramInput {
        data_in: Some(data),
        ..Default::default()
    };
    let (answer, errno) = match prog.test_run(input) {
        Ok(out) => (format!("ran, returned {}", out.return_value), None),
        Err(e) => (format!("{e}"), errno::of_libbpf(&e)),
    };
    case.detail("test_run", &answer);
    if errno == Some(ENOTSUPP) {
        Ok(())
    } else {
        Err(CaseError::Fail(anyhow::anyhow!(
            "BPF_PROG_TEST_RUN on {}: {answer} (expected ENOTSUPP, {ENOTSUPP})",
            prog.name().to_string_lossy()
        )))
    }
}

/// Named counters of a program (`.bss` fields, map slots), as a table's body reads them.
pub type Counters = Vec<(&'static str, u64)>;

/// One row of a module's test-run table: the frame handed to the program, the return value it
/// must give and, where set, the bytes it must hand back, the context it is given and the
/// counters it must leave. A module lists its rows with rstest (`#[case::<name>(…)]`) and runs
/// each with [`Row::case`], as the case `<module>::test_run_<name>`.
pub struct Row {
    frame: Vec<u8>,
    retval: i32,
    bytes: Option<Vec<u8>>,
    context: Option<Vec<u8>>,
    counters: Counters,
    /// The kernel's name of the program type, set by [`Row::case`].
    ty: String,
}

/// What one test run handed back.
pub struct Ran {
    /// The program's return value.
    pub retval: i32,
    /// The packet after the run.
    pub data: Vec<u8>,
    /// The context after the run (empty unless the row gave one).
    pub context: Vec<u8>,
}

impl Row {
    /// A row running the program on `frame`, which must return `retval`.
    pub fn new(frame: Vec<u8>, retval: i32) -> Self {
        Row {
            frame,
            retval,
            bytes: None,
            context: None,
            counters: Vec::new(),
            ty: String::new(),
        }
    }

    /// The program must hand back exactly `bytes`.
    pub fn bytes(mut self, bytes: Vec<u8>) -> Self {
        self.bytes = Some(bytes);
        self
    }

    /// The program must hand the frame back unchanged.
    pub fn unchanged(self) -> Self {
        let frame = self.frame.clone();
        self.bytes(frame)
    }

    /// The program runs on this context (`ctx_in`); the context it leaves comes back in
    /// [`Ran::context`].
    pub fn context(mut self, context: Vec<u8>) -> Self {
        self.context = Some(context);
        self
    }

    /// After the run, these of the program's counters must hold these values, listed in the order
    /// the table reads them (the others are only recorded).
    pub fn counters(mut self, expected: impl IntoIterator<Item = (&'static str, u64)>) -> Self {
        self.counters = expected.into_iter().collect();
        self
    }

    /// The frame the program runs on.
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// Runs the row as the calling test's case (`<module>::test_run_<name>` for the rstest case
    /// `#[case::<name>(…)]` of a `test_run` function) for a program of type `prog_type`. `body`
    /// loads the module's object, runs the program with [`Row::run`] or [`Row::run_counted`] and
    /// checks what only the module knows.
    pub fn case(
        mut self,
        prog_type: ProgramType,
        body: impl FnOnce(&mut Case, &Row) -> CaseResult,
    ) {
        self.ty = crate::kernel::prog_type_name(prog_type);
        Case::run(prog_type, |case| body(case, &self));
    }

    /// Runs `prog` once on the row (through [`run`]), records the return value and checks it
    /// and the bytes handed back, then measures the run's cost ([`measure`]). A row that expects
    /// counters takes [`Row::run_counted`]. What the body checks after it, it checks on [`Ran`]:
    /// the program's own state has seen the measurement's runs.
    pub fn run(&self, case: &mut Case, prog: &ProgramMut<'_>) -> CaseResult<Ran> {
        if !self.counters.is_empty() {
            return Err(CaseError::Error(anyhow::anyhow!(
                "the row expects counters {:?}: run it with run_counted",
                self.counters
            )));
        }
        let ran = self.run_once(case, prog)?;
        self.measure(case, prog)?;
        Ok(ran)
    }

    /// [`Row::run`], with `counters` reading the program's counters between the run and the
    /// measurement: each is recorded, and those the row names must hold the values it gives.
    pub fn run_counted(
        &self,
        case: &mut Case,
        prog: &ProgramMut<'_>,
        counters: impl FnOnce() -> CaseResult<Counters>,
    ) -> CaseResult<Ran> {
        let ran = self.run_once(case, prog)?;
        let observed = counters()?;
        for (name, value) in &observed {
            case.detail(name, value);
        }
        let checked: Counters = observed
            .into_iter()
            .filter(|(name, _)| self.counters.iter().any(|(n, _)| n == name))
            .collect();
        assert_eq!(
            checked, self.counters,
            "the program's counters after the run"
        );
        self.measure(case, prog)?;
        Ok(ran)
    }

    fn measure(&self, case: &mut Case, prog: &ProgramMut<'_>) -> CaseResult {
        measure(case, prog, &self.frame, self.context.as_deref()).map(drop)
    }

    fn run_once(&self, case: &mut Case, prog: &ProgramMut<'_>) -> CaseResult<Ran> {
        // Room for a program that grows the packet (or hands back a struct of its own).
        let mut data_out = vec![0u8; self.frame.len() + 256];
        let mut context_in = self.context.clone();
        let mut context_out = self.context.as_ref().map(|c| vec![0u8; c.len()]);
        let input = ProgramInput {
            data_in: Some(&self.frame),
            data_out: Some(&mut data_out),
            context_in: context_in.as_deref_mut(),
            context_out: context_out.as_deref_mut(),
            ..Default::default()
        };
        let output = run(&self.ty, prog, input)?;
        let ran = Ran {
            retval: output.return_value as i32,
            data: output.data.as_deref().unwrap_or_default().to_vec(),
            context: output.context.as_deref().unwrap_or_default().to_vec(),
        };
        case.detail("retval", ran.retval);
        let prog = prog.name().to_string_lossy();
        assert_eq!(ran.retval, self.retval, "return value of {prog}");
        if let Some(bytes) = &self.bytes {
            assert_eq!(hex(&ran.data), hex(bytes), "the packet {prog} handed back");
        }
        Ok(ran)
    }
}
