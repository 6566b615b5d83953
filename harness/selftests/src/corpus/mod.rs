//! A tree's corpus: the programs of its `tools/testing/selftests/bpf/progs/*.c` that carry test
//! annotations or that its `prog_tests` run through the test loader (`RUN_TESTS`), compiled with
//! clang-19 and the tree's own headers, its own `bpf_helper_defs.h` (its `scripts/bpf_doc.py`)
//! and a `vmlinux.h` that its own bpftool makes from its kernel's BTF. [`build`] makes one into a
//! directory with a manifest, `corpus.json`, that the columns run from; what did not compile is
//! listed there with clang's first error.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::spec::Constants;

mod scan;

use scan::Scan;

/// The compiler (pinned: the suite's samples use it too).
pub const CLANG: &str = "clang-19";

/// Bumped when what the build reads from a tree, or writes in the manifest, changes (the objects
/// are then scanned again, not compiled again).
const SCAN: u32 = 2;

/// The manifest's key for objects compiled under `compile_key`.
pub fn manifest_key(compile_key: &str) -> String {
    format!("{compile_key}-scan{SCAN}")
}

/// The manifest of a built corpus.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Corpus {
    /// The tree's id (`6.12`).
    pub tree: String,
    /// The kernels the tree belongs to (its expectations must hold there).
    pub kernels: Vec<String>,
    /// The cache key it was built under.
    pub key: String,
    /// `clang-19 --version`'s first line.
    pub clang: String,
    /// The compile flags (besides include directories).
    pub cflags: Vec<String>,
    /// Where the objects are.
    pub dir: PathBuf,
    /// The loader's constants.
    pub constants: Constants,
    /// The tree's helper names by id.
    pub helpers: Vec<String>,
    /// What the selftests' test module (`bpf_testmod`) defines: a load failure naming one of
    /// these needs the module.
    pub testmod: BTreeSet<String>,
    /// The objects and their tests.
    pub objects: Vec<CorpusObject>,
    /// Sources that did not compile, with clang's first error.
    pub failed: Vec<CompileFailure>,
    /// Objects the suite's libbpf cannot open, with its complaint.
    pub unopened: Vec<CompileFailure>,
}

/// One object of a corpus.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CorpusObject {
    /// `progs/<name>.c`.
    pub name: String,
    /// Its tree's test loader runs it (`RUN_TESTS`).
    pub run_by_loader: bool,
    /// `prog_tests/verifier.c` runs it without `CAP_SYS_ADMIN`.
    pub without_sys_admin: bool,
    /// Its pre-execution hook in `prog_tests/verifier.c`.
    pub hook: Option<String>,
    /// Its test programs.
    pub programs: Vec<String>,
}

/// A source that did not compile.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompileFailure {
    /// `progs/<name>.c`.
    pub name: String,
    /// clang's first error.
    pub error: String,
}

impl Corpus {
    /// The manifest file in a corpus directory.
    pub fn manifest(dir: &Path) -> PathBuf {
        dir.join("corpus.json")
    }

    /// Reads a built corpus.
    pub fn load(dir: &Path) -> Result<Corpus> {
        let path = Self::manifest(dir);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The object file of `obj`.
    pub fn object_path(&self, obj: &CorpusObject) -> PathBuf {
        self.dir.join(format!("{}.bpf.o", obj.name))
    }

    /// Every test program, as `(object, program)`.
    pub fn cases(&self) -> impl Iterator<Item = (&str, &str)> {
        self.objects.iter().flat_map(|o| {
            o.programs
                .iter()
                .map(move |p| (o.name.as_str(), p.as_str()))
        })
    }
}

/// What a build needs.
pub struct Inputs<'a> {
    /// The tree's id.
    pub tree_id: &'a str,
    /// The kernels it belongs to.
    pub kernels: &'a [String],
    /// The extracted source tree.
    pub tree: &'a Path,
    /// A kernel image with `.BTF` (its kernel's), for `vmlinux.h`.
    pub btf: &'a Path,
    /// The corpus directory to fill (its cache key's).
    pub out: &'a Path,
    /// The compile inputs' key (package, clang, flags, BTF kernel).
    pub key: &'a str,
    /// The tree Makefile's BPF flags.
    pub cflags: &'a [String],
    /// Include directories relative to the tree (besides the generated one and the selftests').
    pub include: &'a [String],
    /// Compiler processes at once.
    pub jobs: usize,
}

/// The selftests directory of a tree.
fn selftests(tree: &Path) -> PathBuf {
    tree.join("tools/testing/selftests/bpf")
}

/// Builds the corpus into `inputs.out` and writes its manifest; `say` reports progress.
pub fn build(inputs: &Inputs<'_>, say: &dyn Fn(&str)) -> Result<Corpus> {
    let st = selftests(inputs.tree);
    ensure!(st.join("progs").is_dir(), "{} has no progs/", st.display());
    fs::create_dir_all(inputs.out)?;
    let scan = Scan::of(inputs.tree)?;
    let mut sources: BTreeSet<String> = scan.annotated.iter().cloned().collect();
    sources.extend(scan.loader_runs.keys().cloned());
    sources.extend(scan.btf_paths.iter().cloned());
    sources.retain(|s| st.join("progs").join(format!("{s}.c")).is_file());
    let failed =
        match Compiled::read(inputs.out).filter(|c| c.key == inputs.key && c.sources == sources) {
            Some(done) => done.failed,
            None => {
                let include = inputs.out.join("include");
                say("bpftool (the tree's own, for vmlinux.h)");
                let bpftool = build_bpftool(inputs.tree, &inputs.out.join("bpftool"))?;
                say("headers: libbpf's, bpf_helper_defs.h, vmlinux.h");
                headers(inputs.tree, &bpftool, inputs.btf, &include)?;
                let mut flags: Vec<String> = inputs.cflags.to_vec();
                flags.push(format!("-I{}", include.display()));
                flags.push(format!("-I{}", st.display()));
                for dir in inputs.include {
                    flags.push(format!("-I{}", inputs.tree.join(dir).display()));
                }
                flags.extend(system_includes()?);
                say(&format!(
                    "compiling {} sources with {} jobs",
                    sources.len(),
                    inputs.jobs
                ));
                let failed = compile(
                    &st,
                    &sources,
                    &flags,
                    &scan.file_cflags,
                    inputs.out,
                    inputs.jobs,
                )?;
                Compiled {
                    key: inputs.key.to_owned(),
                    sources: sources.clone(),
                    failed: failed.clone(),
                }
                .write(inputs.out)?;
                failed
            }
        };

    let constants = scan.constants;
    let mut objects = Vec::new();
    let mut unopened = Vec::new();
    for name in &sources {
        let path = inputs.out.join(format!("{name}.bpf.o"));
        if !path.is_file() || scan.btf_paths.contains(name) && !scan.annotated.contains(name) {
            continue;
        }
        let run = scan.loader_runs.get(name);
        let bytes = fs::read(&path)?;
        let (programs, messages) = loader::load::with_libbpf_messages(|| {
            crate::exec::tests(name, &bytes, run.is_some(), &constants)
        });
        let programs = match programs {
            Ok(p) => p,
            Err(e) => {
                let why = crate::prepared::complaint(&messages).unwrap_or(e);
                unopened.push(CompileFailure {
                    name: name.clone(),
                    error: format!(
                        "{} cannot open it: {why}",
                        crate::prepared::libbpf_version()
                    ),
                });
                continue;
            }
        };
        if programs.is_empty() {
            continue;
        }
        objects.push(CorpusObject {
            name: name.clone(),
            run_by_loader: run.is_some(),
            without_sys_admin: run.is_some_and(|r| r.without_sys_admin),
            hook: run.and_then(|r| r.hook.clone()),
            programs,
        });
    }
    let corpus = Corpus {
        tree: inputs.tree_id.to_owned(),
        kernels: inputs.kernels.to_vec(),
        key: manifest_key(inputs.key),
        clang: clang_version()?,
        cflags: inputs.cflags.to_vec(),
        dir: inputs.out.to_owned(),
        constants,
        helpers: scan.helpers,
        testmod: scan.testmod,
        objects,
        failed,
        unopened,
    };
    let tmp = inputs.out.join("corpus.json.tmp");
    fs::write(&tmp, serde_json::to_string_pretty(&corpus)?)?;
    fs::rename(&tmp, Corpus::manifest(inputs.out))?;
    Ok(corpus)
}

/// What a compile left in a corpus directory: its key, its sources, what failed.
#[derive(Serialize, Deserialize)]
struct Compiled {
    key: String,
    sources: BTreeSet<String>,
    failed: Vec<CompileFailure>,
}

impl Compiled {
    fn read(dir: &Path) -> Option<Compiled> {
        serde_json::from_str(&fs::read_to_string(dir.join("compiled.json")).ok()?).ok()
    }

    fn write(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join("compiled.json.tmp");
        fs::write(&tmp, serde_json::to_string_pretty(self)?)?;
        fs::rename(&tmp, dir.join("compiled.json"))?;
        Ok(())
    }
}

/// `clang-19 --version`'s first line.
pub fn clang_version() -> Result<String> {
    let out = Command::new(CLANG)
        .arg("--version")
        .output()
        .with_context(|| format!("running {CLANG} (run ci/setup to install it)"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// The tree's bpftool, bootstrap flavour (what its selftests build for `vmlinux.h` and
/// skeletons), built into `out` unless it is there.
fn build_bpftool(tree: &Path, out: &Path) -> Result<PathBuf> {
    let bin = out.join("bootstrap/bpftool");
    if bin.is_file() {
        return Ok(bin);
    }
    fs::create_dir_all(out)?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let result = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(tree.join("tools/bpf/bpftool"))
        .arg(format!("-j{jobs}"))
        .arg("bootstrap")
        .arg(format!("OUTPUT={}/", out.display()))
        .output()
        .context("running make (run ci/setup for make and gcc)")?;
    if !result.status.success() || !bin.is_file() {
        bail!(
            "building the tree's bpftool failed: {}",
            tail(&String::from_utf8_lossy(&result.stderr), 20)
        );
    }
    Ok(bin)
}

/// `include/bpf/*.h` (the tree's libbpf headers and its `bpf_helper_defs.h`) and
/// `include/vmlinux.h`.
fn headers(tree: &Path, bpftool: &Path, btf: &Path, include: &Path) -> Result<()> {
    let bpf = include.join("bpf");
    fs::create_dir_all(&bpf)?;
    for entry in fs::read_dir(tree.join("tools/lib/bpf"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "h") {
            fs::copy(&path, bpf.join(path.file_name().expect("a file")))?;
        }
    }
    let defs = Command::new("python3")
        .args(["scripts/bpf_doc.py", "--header", "helpers", "--file"])
        .arg("include/uapi/linux/bpf.h")
        .current_dir(tree)
        .output()
        .context("running python3 (the tree's scripts/bpf_doc.py)")?;
    ensure!(
        defs.status.success(),
        "scripts/bpf_doc.py failed: {}",
        tail(&String::from_utf8_lossy(&defs.stderr), 10)
    );
    fs::write(bpf.join("bpf_helper_defs.h"), defs.stdout)?;
    let vmlinux = Command::new(bpftool)
        .args(["btf", "dump", "file"])
        .arg(btf)
        .args(["format", "c"])
        .output()
        .context("running the tree's bpftool")?;
    ensure!(
        vmlinux.status.success(),
        "bpftool btf dump {} failed: {}",
        btf.display(),
        tail(&String::from_utf8_lossy(&vmlinux.stderr), 10)
    );
    fs::write(include.join("vmlinux.h"), vmlinux.stdout)?;
    Ok(())
}

/// clang's system include directories as `-idirafter` (the selftests' `get_sys_includes`).
fn system_includes() -> Result<Vec<String>> {
    let out = Command::new(CLANG)
        .args(["-v", "-E", "-"])
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {CLANG}"))?;
    let text = String::from_utf8_lossy(&out.stderr);
    Ok(text
        .lines()
        .skip_while(|l| !l.starts_with("#include <...> search starts here:"))
        .skip(1)
        .take_while(|l| !l.starts_with("End of search list."))
        .map(|l| format!("-idirafter{}", l.trim()))
        .collect())
}

/// Compiles `sources` in parallel; returns those that failed.
fn compile(
    st: &Path,
    sources: &BTreeSet<String>,
    flags: &[String],
    file_flags: &BTreeMap<String, Vec<String>>,
    out: &Path,
    jobs: usize,
) -> Result<Vec<CompileFailure>> {
    let queue = Mutex::new(sources.iter().collect::<Vec<_>>());
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| {
                loop {
                    let Some(name) = queue.lock().expect("queue").pop() else {
                        break;
                    };
                    let object = out.join(format!("{name}.bpf.o"));
                    let _ = fs::remove_file(&object);
                    let result = Command::new(CLANG)
                        .args(flags)
                        .args(file_flags.get(name).into_iter().flatten())
                        .arg("-c")
                        .arg(st.join("progs").join(format!("{name}.c")))
                        .arg("-o")
                        .arg(&object)
                        .current_dir(st)
                        .output();
                    let error = match result {
                        Ok(o) if o.status.success() => continue,
                        Ok(o) => first_error(&String::from_utf8_lossy(&o.stderr), st),
                        Err(e) => format!("{CLANG} did not run: {e}"),
                    };
                    let _ = fs::remove_file(&object);
                    failed.lock().expect("failed").push(CompileFailure {
                        name: name.clone(),
                        error,
                    });
                }
            });
        }
    });
    let mut failed = failed.into_inner().expect("failed");
    failed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(failed)
}

/// clang's first `error:` line, paths relative to the selftests directory.
fn first_error(stderr: &str, st: &Path) -> String {
    let prefix = format!("{}/", st.display());
    stderr
        .lines()
        .find(|l| l.contains("error:"))
        .unwrap_or_else(|| stderr.lines().next().unwrap_or("no output"))
        .replace(&prefix, "")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
