//! Runs for the unit tests: records as cases write them, a whole run directory, a run of records.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use record::{
    LoadOutcome, Outcome, Placed, ProgSize, ProgramLog, Record, RunCost, Unreadable, VerifierStats,
    write,
};

use super::{Cell, Run, Timing};

/// A record as a case writes it: a load with statistics and a log, measurements, a reason.
pub fn record(kernel: &str, case: &str, outcome: Outcome) -> Record {
    let reason = (outcome != Outcome::Pass).then(|| format!("{case} is {outcome} on {kernel}"));
    let mut r = Record::runner(kernel, case, outcome, reason);
    let ty = case.split("::").next().unwrap_or_default();
    (r.binary, r.test, r.prog_type) = ("suite".into(), case.into(), ty.into());
    r.kernel_release = format!("{kernel}.0-amd64");
    r.suite = "git:0123abcd".into();
    r.duration_ms = 40 + case.len() as u64;
    r.details.insert("retval".into(), 2.into());
    let loaded = outcome == Outcome::Pass;
    let log = "0: (b7) r0 = 2\n1: (95) exit\nprocessed 2 insns <&> (limit 1000000)".into();
    let stats = VerifierStats {
        processed_insns: 2,
        stack_depth: Some("0".into()),
        ..Default::default()
    };
    let programs = BTreeMap::from([(
        "prog".to_owned(),
        ProgramLog {
            stats: Some(stats),
            log,
            size: loaded.then_some(ProgSize {
                xlated_bytes: 16,
                jited_bytes: 23,
                verified_insns: Some(2),
            }),
        },
    )]);
    if loaded {
        let cost = RunCost {
            ns_per_run_median: 10.0,
            min: 9.0,
            max: 12.0,
            rounds: 5,
            repeat: 1000,
            emulated: false,
        };
        r.run_cost.insert("prog".into(), cost);
    }
    r.loads.push(LoadOutcome {
        object: format!("{ty}_bpf"),
        loaded,
        errno: (!loaded).then(|| "EINVAL".into()),
        failed_program: (!loaded).then(|| "prog".into()),
        message: (!loaded).then(|| "R1 invalid mem access 'scalar'".into()),
        programs,
    });
    r
}

/// A run as `bpfconf matrix --run-dir` leaves it: three columns, a case that differs across
/// them, a test that wrote no record on one kernel (the runner's record names it), the
/// columns' records, timings and logs.
pub fn whole_run(dir: &Path) {
    use Outcome::*;
    for (k, lwt) in [("5.10", Pass), ("6.1", Unsupported), ("host-6.18", Fail)] {
        for (case, outcome) in [
            ("xdp::drops", Pass),
            ("xdp::passes", Pass),
            ("lwt::seg6", lwt),
        ] {
            write(dir, &record(k, case, outcome)).unwrap();
        }
        write(dir, &Record::runner(k, "runner::column", Pass, None)).unwrap();
        fs::write(dir.join(format!("{k}.log")), "booted\n").unwrap();
    }
    write(dir, &record("5.10", "xdp::bounces", Pass)).unwrap();
    let mut missing = Record::runner("6.1", "xdp::bounces", Error, Some("no record".into()));
    (missing.binary, missing.test) = ("suite".into(), "xdp::bounces".into());
    write(dir, &missing).unwrap();
    let timings: Vec<Timing> = ["5.10", "6.1", "host-6.18"]
        .iter()
        .map(|k| Timing {
            kernel: (*k).into(),
            boot_s: Some(5.5),
            total_s: 80.0,
            end: "ok".into(),
        })
        .collect();
    fs::write(
        dir.join("timings.json"),
        serde_json::to_string_pretty(&timings).unwrap(),
    )
    .unwrap();
}

/// The run of `records` (in this order) and `unreadable`, its cells made.
pub fn of_records(records: &[Record], unreadable: &[Unreadable]) -> Run {
    let mut run = Run {
        records: (records.iter())
            .map(|r| Placed {
                place: String::new(),
                record: r.clone(),
            })
            .collect(),
        unreadable: unreadable.to_vec(),
        ..Run::default()
    };
    run.fill_cells();
    run
}

/// A run of bare cells (case, kernel, outcome), columns in the order first seen.
pub fn of_cells(cells: &[(&str, &str, Outcome)]) -> Run {
    let mut run = Run::default();
    for (case, kernel, outcome) in cells {
        if !run.kernels.contains(&kernel.to_string()) {
            run.kernels.push(kernel.to_string());
        }
        let row = run.cases.entry(case.to_string()).or_default();
        row.cells
            .insert(kernel.to_string(), Cell::new(*outcome, None));
    }
    run
}
