//! `bpfconf selftests build|run|summary`: the kernel's own BPF selftests of each `[[selftests]]`
//! tree of kernels.toml (crate `selftests`). `build` fetches the tree's pinned
//! `linux-source` package (hash-checked), extracts it and compiles its corpus into the build cache,
//! keyed by the package, clang's version, the flags and the BTF kernel's pins (an unchanged corpus
//! is never rebuilt), and lists the corpora for the columns (`bpfconf-selftests.json` in cargo's
//! target directory). Every column's `bpfconf suite` then runs them after the test binaries
//! ([`run_in_column`]), one record per program.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use record::{self as record, Event, Outcome, Record};
use selftests::{Corpus, Divergences, Facts, judge};
use sha2::{Digest, Sha256};

use crate::kernels::{self, KernelList, KernelSpec, Kind, SelftestsTree, fetch, source};
use crate::kmsg::Kmsg;
use crate::watched;

/// Bumped when how a corpus is compiled changes beyond its inputs.
const RECIPE: &str = "selftests corpus 1";

/// The list of built corpora the columns run (their directories).
pub fn list_path() -> PathBuf {
    crate::paths::target_dir().join("bpfconf-selftests.json")
}

/// `kernels/selftests-divergences.toml`.
pub fn divergences_path() -> PathBuf {
    crate::paths::workspace_root().join("kernels/selftests-divergences.toml")
}

/// Builds (or finds in the cache) the corpus of every tree of `kernels` selected by `trees` (all
/// when empty) and lists them for the columns.
pub fn build_all(kernels: &KernelList, trees: &[String]) -> Result<Vec<Corpus>> {
    let mut built = Vec::new();
    for t in &kernels.selftests {
        if !trees.is_empty() && !trees.contains(&t.tree) {
            continue;
        }
        let corpus = build(kernels, t, &|step| {
            eprintln!("selftests {}: {step}", t.tree)
        })?;
        eprintln!(
            "selftests {}: {} objects, {} test programs, {} sources that do not compile, {} objects \
             libbpf cannot open ({})",
            t.tree,
            corpus.objects.len(),
            corpus.cases().count(),
            corpus.failed.len(),
            corpus.unopened.len(),
            corpus.dir.display()
        );
        built.push(corpus);
    }
    let dirs: Vec<&Path> = built.iter().map(|c| c.dir.as_path()).collect();
    fs::write(list_path(), serde_json::to_string_pretty(&dirs)?)?;
    Ok(built)
}

/// The package a tree is pinned to, and the spec its download reports under.
fn package(kernels: &KernelList, t: &SelftestsTree) -> Result<KernelSpec> {
    let (package, suite) = match (&t.source, &t.package) {
        (Some(id), None) => {
            let k = kernels
                .kernel
                .iter()
                .find(|k| &k.id == id && k.kind == Kind::Source)
                .with_context(|| {
                    format!("selftests {}: no kind = \"source\" kernel {id}", t.tree)
                })?;
            (k.packages[0].clone(), k.suite.clone())
        }
        (None, Some(p)) => (p.clone(), t.suite.clone()),
        _ => bail!(
            "selftests {}: give either source = <kernel id> or [selftests.package]",
            t.tree
        ),
    };
    Ok(KernelSpec {
        id: format!("selftests-{}", t.tree),
        kind: Kind::Source,
        suite,
        packages: vec![package],
        vmlinuz: None,
        modules: None,
        config: None,
        base: None,
        jit: true,
        known_bugs: Vec::new(),
        allowed_splats: Vec::new(),
    })
}

/// Builds the corpus of `t` unless its key is built already.
pub fn build(kernels: &KernelList, t: &SelftestsTree, say: &dyn Fn(&str)) -> Result<Corpus> {
    let spec = package(kernels, t)?;
    let pkg = &spec.packages[0];
    let btf_kernel = kernels.select(std::slice::from_ref(&t.btf))?.remove(0);
    let clang = selftests::corpus::clang_version()?;
    let mut h = Sha256::new();
    for part in [
        RECIPE,
        &pkg.name,
        &pkg.version,
        &pkg.sha256,
        &clang,
        &t.cflags.join(" "),
        &t.include.join(" "),
        &fetch::pins(&btf_kernel)?,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let key: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let root = source::build_root();
    let dir = root
        .join("selftests")
        .join(format!("{}-{}-{key}", t.tree, pkg.version));
    if let Ok(corpus) = Corpus::load(&dir)
        && corpus.key == selftests::corpus::manifest_key(&key)
    {
        return Ok(corpus);
    }
    let btf = fetch::fetch(&btf_kernel, say)?.vmlinuz;
    let tree = {
        let _lock = source::lock(&root, pkg)?;
        source::source_tree(&spec, pkg, &root, say)?
    };
    let _lock = source::lock(&root.join("selftests"), pkg)?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let inputs = selftests::corpus::Inputs {
        tree_id: &t.tree,
        kernels: &t.kernels,
        tree: &tree,
        btf: &btf,
        out: &dir,
        key: &key,
        cflags: &t.cflags,
        include: &t.include,
        jobs,
    };
    selftests::corpus::build(&inputs, say)
}

/// The corpora the columns run (`bpfconf-selftests.json`); none when no build listed any.
pub fn listed() -> Result<Vec<Corpus>> {
    let path = list_path();
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    let dirs: Vec<PathBuf> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    dirs.iter().map(|d| Corpus::load(d)).collect()
}

/// `bpfconf selftests run`: every listed corpus (or the one in `corpus`) on the running kernel.
pub fn run(kernel: &str, results: &Path, corpus: Option<&Path>, budget: Duration) -> Result<()> {
    selftests::raise_memlock();
    let corpora = match corpus {
        Some(dir) => vec![Corpus::load(dir)?],
        None => listed()?,
    };
    let kernels = KernelList::load()?;
    let spec = kernels.spec(kernel);
    let vm = spec.is_some_and(|s| s.kind != Kind::Host);
    // The kernel's kept config: what the column's runner hands its test binaries, else the cache's.
    let config = std::env::var_os("BPFCONF_KCONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            spec.filter(|_| vm)
                .map(|s| kernels::kernel_dir(&s.id).join("config"))
        });
    let facts = Facts::probe(vm, config.as_deref(), budget);
    let divergences = Divergences::load(&divergences_path())?;
    for corpus in &corpora {
        let column = selftests::Column {
            kernel,
            results,
            divergences: &divergences,
            facts: &facts,
        };
        let ran = selftests::run(corpus, &column)?;
        println!(
            "selftests {} on {kernel}: {} records ({} pass, {} fail, {} unsupported, {} error) in {:.1} s",
            corpus.tree, ran.records, ran.pass, ran.fail, ran.unsupported, ran.error, ran.seconds
        );
    }
    nix::unistd::sync();
    Ok(())
}

/// Runs the listed corpora in a column (`bpfconf suite`, after the test binaries), each in a
/// child `bpfconf selftests run` watched like a test binary: a corpus that crashed or hung leaves
/// `error` records for the programs it did not reach, kernel log splats an `error` record
/// `selftests_<tree>::kernel_log`. Returns whether every corpus ran to its end cleanly.
/// `env` is the test binaries' environment, `timeout` a binary's.
pub fn run_in_column(
    kernel: &str,
    results: &Path,
    timeout: Duration,
    env: &[(String, String)],
    allowed: &[regex::Regex],
) -> Result<bool> {
    let mut clean = true;
    for corpus in listed()? {
        let name = judge::binary(&corpus.tree);
        Event::Binary { name: name.clone() }.emit();
        let mut kmsg = Kmsg::open_at_end();
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["selftests", "run", "--kernel", kernel, "--results"])
            .arg(results)
            .arg("--corpus")
            .arg(&corpus.dir)
            .envs(env.iter().cloned());
        let ended = watched::run(cmd, timeout, |line| {
            println!("{line}");
            watched::Next::Go
        })?;
        let end = if ended.timed_out {
            format!("killed after the {} s timeout", timeout.as_secs())
        } else if let Some(sig) = ended.status.signal() {
            format!("killed by signal {sig}")
        } else {
            format!("exited with status {}", ended.status.code().unwrap_or(-1))
        };
        let missing = record_missing(
            &corpus,
            results,
            kernel,
            &format!("no record: the corpus runner {end}"),
        )?;
        let splats = match kmsg.as_mut() {
            Ok(k) => k.splats(allowed),
            Err(e) => vec![format!("cannot read the kernel log (/dev/kmsg): {e}")],
        };
        if !splats.is_empty() {
            let why = format!("kernel log while {name} ran: {}", splats.join("\n"));
            let mut r = Record::runner(
                kernel,
                &format!("{name}::kernel_log"),
                Outcome::Error,
                Some(why),
            );
            r.binary = name.clone();
            record::write(results, &r)?;
        }
        clean &= ended.status.success() && missing == 0 && splats.is_empty();
        Event::BinaryEnded { name, end, missing }.emit();
    }
    Ok(clean)
}

/// Writes an `error` record, with `why`, for each case of `corpus` that has no record of `kernel`
/// in `results`; returns how many it wrote.
pub fn record_missing(corpus: &Corpus, results: &Path, kernel: &str, why: &str) -> Result<usize> {
    let binary = judge::binary(&corpus.tree);
    let seen: BTreeSet<String> = fs::read_dir(results.join(kernel))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{binary}__"))
        })
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<Record>(&t).ok())
        .map(|r| r.case)
        .collect();
    let expected = corpus
        .cases()
        .map(|(o, p)| judge::case_id(&corpus.tree, o, p))
        .chain(
            corpus
                .failed
                .iter()
                .chain(&corpus.unopened)
                .map(|f| format!("{binary}::{}", f.name)),
        );
    let mut written = 0;
    for case in expected.filter(|c| !seen.contains(c)) {
        let mut r = Record::runner(kernel, &case, Outcome::Error, Some(why.to_owned()));
        (r.binary, r.test) = (binary.clone(), case);
        record::write(results, &r)?;
        written += 1;
    }
    Ok(written)
}

/// `bpfconf selftests summary RUN…`: per test file × kernel counts of the corpus records.
pub fn summary(runs: &[PathBuf]) -> Result<String> {
    let run = crate::run::load(runs)?;
    let records: Vec<Record> = run.records.into_iter().map(|p| p.record).collect();
    Ok(selftests::summary::markdown(
        &records,
        crate::run::kernel_order,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_divergences_and_trees_parse() {
        let d = Divergences::load(&divergences_path()).unwrap();
        let kernels =
            KernelList::load_from(&crate::paths::workspace_root().join("kernels/kernels.toml"))
                .unwrap();
        let trees: Vec<&str> = kernels.selftests.iter().map(|t| t.tree.as_str()).collect();
        for div in &d.list {
            assert!(
                trees.contains(&div.tree.as_str()),
                "{div:?} names no [[selftests]] tree"
            );
            assert!(div.case.contains('/') && !div.reason.is_empty(), "{div:?}");
        }
        for crash in &d.crashes {
            assert!(
                trees.contains(&crash.tree.as_str()),
                "{crash:?} names no tree"
            );
            assert!(
                crash.case.contains('/') && !crash.reason.is_empty(),
                "{crash:?}"
            );
            for k in &crash.kernels {
                assert!(
                    kernels.spec(k).is_some(),
                    "{crash:?} names unknown kernel {k}"
                );
            }
        }
        for t in &kernels.selftests {
            assert!(
                package(&kernels, t).is_ok(),
                "tree {} has no package",
                t.tree
            );
            for k in t.kernels.iter().chain([&t.btf]) {
                assert!(
                    kernels.spec(k).is_some(),
                    "tree {} names unknown kernel {k}",
                    t.tree
                );
            }
        }
    }
}
