//! The kernel's own BPF selftests on every kernel of the matrix.
//!
//! A pinned kernel source tree (`[[selftests]]` in `kernels/kernels.toml`) holds, in
//! `tools/testing/selftests/bpf/progs/`, hundreds of programs whose expectations are written as
//! BTF decl tags (`__success`, `__failure`, `__msg("…")`, `__retval(…)`, `__xlated("…")`, …, from
//! `bpf_misc.h`), which the tree's `test_loader.c` checks. This crate builds such a tree's
//! programs ([`corpus`]), reads their annotations ([`tags`], [`spec`]) and does on the running
//! kernel what `test_loader.c` does ([`exec`], loading from prepared objects: [`prepared`]),
//! then answers two questions per program and kernel ([`judge`]): on a kernel the tree belongs
//! to, does every expectation hold (else `fail`, unless a listed divergence); on any other, where
//! does this kernel's verifier differ from the tree's expectation.

pub mod budget;
pub mod corpus;
pub mod exec;
pub mod judge;
pub mod kernel;
pub mod maps;
pub mod pattern;
pub mod prepared;
pub mod spec;
pub mod summary;
pub mod tags;

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use record::{self as record, Outcome, Record};

pub use corpus::Corpus;
pub use judge::Divergences;
pub use kernel::Facts;

/// Where a corpus runs.
pub struct Column<'a> {
    /// The column's kernel id.
    pub kernel: &'a str,
    /// The results directory.
    pub results: &'a Path,
    /// The listed divergences.
    pub divergences: &'a Divergences,
    /// The running kernel's facts.
    pub facts: &'a Facts,
}

/// What a corpus run did, for its progress line.
#[derive(Debug, Default)]
pub struct Ran {
    /// Records written.
    pub records: usize,
    /// Per outcome.
    pub pass: usize,
    /// `fail` records.
    pub fail: usize,
    /// `unsupported` records.
    pub unsupported: usize,
    /// `error` records.
    pub error: usize,
    /// Seconds.
    pub seconds: f64,
}

/// Runs every test of `corpus` on the running kernel, one record per program (and one per source
/// that did not compile) in `column.results`.
pub fn run(corpus: &Corpus, column: &Column<'_>) -> Result<Ran> {
    let started = Instant::now();
    let release = record::kernel_release();
    let own = corpus.kernels.iter().any(|k| k == column.kernel);
    let cell = judge::Cell {
        tree: &corpus.tree,
        kernel: column.kernel,
        release: &release,
        own,
        divergences: column.divergences,
    };
    let mut ran = Ran::default();
    // An object's records are written together, with one sync.
    let mut write = |records: Vec<Record>| -> Result<()> {
        for r in &records {
            match r.outcome {
                Outcome::Pass => ran.pass += 1,
                Outcome::Fail => ran.fail += 1,
                Outcome::Unsupported => ran.unsupported += 1,
                Outcome::Error => ran.error += 1,
            }
        }
        ran.records += records.len();
        record::write_all(column.results, &records)?;
        Ok(())
    };
    let mut failures = Vec::new();
    let compiled = corpus
        .failed
        .iter()
        .map(|f| (f, format!("does not compile with {}", corpus.clang)));
    let opened = corpus
        .unopened
        .iter()
        .map(|f| (f, "cannot be loaded".to_owned()));
    for (failed, what) in compiled.chain(opened) {
        let case = format!("{}::{}", judge::binary(&corpus.tree), failed.name);
        let why = format!("progs/{}.c {what}: {}", failed.name, failed.error);
        let mut r = Record::runner(column.kernel, &case, Outcome::Unsupported, Some(why));
        (r.binary, r.test, r.kernel_release) = (judge::binary(&corpus.tree), case, release.clone());
        failures.push(r);
    }
    write(failures)?;
    for obj in &corpus.objects {
        let path = corpus.object_path(obj);
        let tests = exec::ObjectTests {
            name: &obj.name,
            path: &path,
            run_by_loader: obj.run_by_loader,
            without_sys_admin: obj.without_sys_admin,
            hook: obj.hook.as_deref(),
            testmod: &corpus.testmod,
            dir: &corpus.dir,
            helpers: &corpus.helpers,
            constants: corpus.constants,
            test_runs: own,
            crashing: column
                .divergences
                .crashing(&corpus.tree, &obj.name, column.kernel),
        };
        let records = match exec::run(&tests, column.facts) {
            Ok(runs) => runs
                .iter()
                .map(|program| judge::record(&obj.name, program, &cell))
                .collect(),
            Err(e) => obj
                .programs
                .iter()
                .map(|program| {
                    let case = judge::case_id(&corpus.tree, &obj.name, program);
                    let why = format!("object {} could not be run: {e}", obj.name);
                    let mut r = Record::runner(column.kernel, &case, Outcome::Error, Some(why));
                    (r.binary, r.test) = (judge::binary(&corpus.tree), case);
                    r.kernel_release = release.clone();
                    r
                })
                .collect(),
        };
        write(records)?;
    }
    ran.seconds = started.elapsed().as_secs_f64();
    Ok(ran)
}

/// Raises `RLIMIT_MEMLOCK` as far as allowed, as libbpf-based loaders do (kernels before 5.11
/// charge BPF memory against it).
pub fn raise_memlock() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let infinity = nix::sys::resource::RLIM_INFINITY;
    if setrlimit(Resource::RLIMIT_MEMLOCK, infinity, infinity).is_err()
        && let Ok((_, hard)) = getrlimit(Resource::RLIMIT_MEMLOCK)
    {
        let _ = setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard);
    }
}
