//! `bpfconf objects FILE.bpf.o…`: your own BPF objects across the matrix. Each kernel (the host
//! and one VM per matrix kernel) opens every object with libbpf and loads each program alone:
//! per program and kernel the verdict, errno, the verifier's key line and statistics, the JIT's
//! size, the whole log in the run directory. The same report as the suite's matrix, with
//! programs as rows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bpf_loader::load::LogLevel;
use bpf_selftests::prepared::{self, OpenOptions, Prepared, Request};
use bpfconf_record::{self as record, Outcome, Record};
use libbpf_rs::ObjectBuilder;
use std::os::fd::AsFd;

use crate::column;
use crate::kernels::{KernelSpec, fetch::fetch};
use crate::vm;

/// ELF's `e_machine` for BPF.
const EM_BPF: u16 = 247;

/// Checks that `path` is a BPF ELF object libbpf can open; returns its program names.
pub fn check(path: &Path) -> Result<Vec<String>> {
    let bytes = fs::read(path).with_context(|| format!("{}: cannot read it", path.display()))?;
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        bail!("{}: not an ELF file", path.display());
    }
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    if machine != EM_BPF {
        bail!(
            "{}: an ELF object for machine {machine}, not BPF ({EM_BPF})",
            path.display()
        );
    }
    let open = ObjectBuilder::default()
        .open_file(path)
        .with_context(|| format!("{}: libbpf cannot open it (truncated?)", path.display()))?;
    Ok(open
        .progs()
        .map(|p| p.name().to_string_lossy().into_owned())
        .collect())
}

/// What `bpfconf objects` runs.
pub struct Options {
    /// The objects (checked, absolute paths).
    pub files: Vec<PathBuf>,
    /// VM kernels.
    pub kernels: Vec<KernelSpec>,
    /// Also the host's kernel.
    pub host: bool,
    /// The run directory.
    pub run_dir: PathBuf,
}

/// Loads the objects on the host and in a VM of each kernel, one column after the other; returns
/// each column's id, seconds and problem (the column's records are in the run directory).
pub fn run(opts: &Options) -> Result<Vec<(String, f64, Option<String>)>> {
    fs::create_dir_all(&opts.run_dir)?;
    let args = |id: &str| -> Vec<String> {
        let mut a = vec![
            "--kernel".to_owned(),
            id.to_owned(),
            "--results".to_owned(),
            opts.run_dir.display().to_string(),
        ];
        a.extend(opts.files.iter().map(|f| f.display().to_string()));
        a
    };
    let timeout = std::time::Duration::from_secs(600);
    let mut columns = Vec::new();
    if opts.host {
        let id = record::kernel_id(&record::kernel_release());
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.arg("objects-load").args(args(&id));
        let log = opts.run_dir.join(format!("{id}.log"));
        let run = column::watch(cmd, timeout, &log, |_| {})?;
        columns.push((id, run.total.as_secs_f64(), run.problem(timeout)));
    }
    for k in &opts.kernels {
        eprintln!("{}: loading the objects", k.id);
        fetch(k, &|_| {})?;
        let config = opts.run_dir.join(format!("{}.toml", k.id));
        let command = format!(
            "{} objects-load {}",
            std::env::current_exe()?.display(),
            args(&k.id).join(" ")
        );
        fs::write(
            &config,
            vm::vmtest_toml(
                std::slice::from_ref(k),
                |_| command.clone(),
                false,
                vm::cpus(),
            ),
        )?;
        let log = opts.run_dir.join(format!("{}.log", k.id));
        let run = column::watch(vm::command(&config, &k.id)?, timeout, &log, |_| {})?;
        columns.push((k.id.clone(), run.total.as_secs_f64(), run.problem(timeout)));
    }
    Ok(columns)
}

/// Loads every program of each object alone, on the running kernel, writing one record per
/// program (`<object>::<program>`) into `results` for column `kernel`. Each object is opened and
/// prepared once and its programs loaded from it (`bpf_selftests::prepared`, what the kernel's
/// selftests corpus uses): a program alone loads even when the object's prog arrays or maps of
/// maps name other programs.
pub fn load_all(files: &[PathBuf], kernel: &str, results: &Path) -> Result<()> {
    bpf_selftests::raise_memlock();
    let release = record::kernel_release();
    record::Event::Started {
        kernel: kernel.to_owned(),
        release: release.clone(),
    }
    .emit();
    let mut log = vec![0u8; 16 << 20];
    for file in files {
        let object = stem(file);
        let programs = match check(file) {
            Ok(p) => p,
            Err(e) => {
                let reason = Some(format!("{e:#}"));
                let r = Record::runner(kernel, &format!("{object}::open"), Outcome::Error, reason);
                record::write(results, &r)?;
                continue;
            }
        };
        let bytes = fs::read(file)?;
        let opts = OpenOptions {
            name: object.clone(),
            ..Default::default()
        };
        let prepared = Prepared::new(&bytes, &opts, None);
        for program in programs {
            let started = std::time::Instant::now();
            let mut r = load_one(&bytes, &opts, prepared.as_ref().ok(), &program, &mut log);
            r.case = format!("{object}::{program}");
            r.kernel = kernel.to_owned();
            r.kernel_release = release.clone();
            r.duration_ms = started.elapsed().as_millis() as u64;
            if let Some(load) = r.loads.first_mut() {
                load.object = object.clone();
            }
            record::write(results, &r)?;
        }
    }
    nix::unistd::sync();
    record::Event::Finished { exit: 0 }.emit();
    Ok(())
}

/// Loads `program` alone (from the prepared object when libbpf adds nothing at load time, else
/// through libbpf in a fresh object) at the statistics log level. A refusal is the program's
/// verdict on this kernel (`details.verdict`), not a failure of the case.
fn load_one(
    bytes: &[u8],
    opts: &OpenOptions,
    prepared: Option<&Prepared>,
    program: &str,
    log: &mut [u8],
) -> Record {
    let req = Request {
        flags: 0,
        log_level: LogLevel::Stats as u32,
    };
    let mut fresh = None;
    let load = match prepared.map(|p| (p, p.load_time(program))) {
        Some((p, Ok(at))) => p.load(program, req, at, log),
        _ => {
            let (object, load) = prepared::fresh(bytes, opts, program, &[], req, log);
            fresh = object;
            load
        }
    };
    let (loaded, size) = match (&load.fd, &fresh) {
        (Some(fd), _) => (true, bpf_loader::load::prog_size(fd.as_fd())),
        (None, Some(o)) => o
            .progs()
            .find(|p| p.name().to_string_lossy() == program)
            .map_or((false, None), |p| {
                (true, bpf_loader::load::prog_size(p.as_fd()))
            }),
        (None, None) => (false, None),
    };
    let mut r = Record::runner("", "", Outcome::Pass, None);
    r.prog_type = program_type(bytes, program);
    let key_line = (!loaded).then(|| bpf_selftests::exec::refusal(&load));
    if let Some(size) = &size {
        r.details
            .insert("jited_bytes".into(), size.jited_bytes.into());
        r.details
            .insert("xlated_bytes".into(), size.xlated_bytes.into());
        r.details.insert(
            "verified_insns".into(),
            size.verified_insns.unwrap_or_default().into(),
        );
    }
    r.details.insert(
        "verdict".into(),
        if loaded { "accepted" } else { "refused" }.into(),
    );
    if let Some(line) = &key_line {
        r.details.insert("key_line".into(), line.clone().into());
    }
    let mut outcome = bpf_loader::load::LoadOutcome {
        loaded,
        errno: load.errno.map(bpf_loader::errno::name),
        failed_program: (!loaded).then(|| program.to_owned()),
        message: key_line,
        ..Default::default()
    };
    outcome.programs.insert(
        program.to_owned(),
        bpfconf_record::ProgramLog {
            stats: bpf_loader::load::parse_stats(&load.log),
            log: load.log,
            size,
        },
    );
    r.loads.push(outcome);
    r
}

/// The program's type, as bpftool names it.
fn program_type(bytes: &[u8], program: &str) -> String {
    ObjectBuilder::default()
        .open_memory(bytes)
        .ok()
        .and_then(|o| {
            o.progs()
                .find(|p| p.name().to_string_lossy() == program)
                .and_then(|p| bpf_features::prog_type_str(p.prog_type() as u32))
        })
        .unwrap_or_default()
}

fn stem(file: &Path) -> String {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    name.strip_suffix(".bpf.o")
        .or_else(|| name.strip_suffix(".o"))
        .unwrap_or(&name)
        .to_owned()
}

/// Per program, the verifier's processed instructions on each kernel (a load that failed: `—`).
pub fn stats_markdown(records: &[Record]) -> String {
    let mut rows: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
    let mut kernels: Vec<&str> = records.iter().map(|r| r.kernel.as_str()).collect();
    kernels.sort_by_key(|k| crate::report::kernel_order(k));
    kernels.dedup();
    for r in records {
        let insns = r
            .loads
            .iter()
            .flat_map(|l| l.programs.values())
            .filter_map(|p| p.stats.as_ref())
            .map(|s| s.processed_insns.to_string())
            .next()
            .unwrap_or_else(|| "—".into());
        rows.entry(&r.case).or_default().insert(&r.kernel, insns);
    }
    let mut out = format!(
        "| program | {} |\n|---|{}\n",
        kernels.join(" | "),
        "---|".repeat(kernels.len())
    );
    for (case, cells) in rows {
        let cells: Vec<&str> = kernels
            .iter()
            .map(|k| cells.get(k).map_or("", String::as_str))
            .collect();
        let _ = writeln!(out, "| {case} | {} |", cells.join(" | "));
    }
    out
}

/// The programs refused (or not loaded at all) on a kernel at or past `min` (`6.1`; the host's
/// column by its release).
pub fn refused_since(records: &[Record], min: &str) -> Vec<String> {
    let at_least = |kernel: &str| {
        let version = kernel.strip_prefix("host-").unwrap_or(kernel);
        crate::report::kernel_order(version) >= crate::report::kernel_order(min)
    };
    records
        .iter()
        .filter(|r| at_least(&r.kernel))
        .filter(|r| {
            r.outcome != Outcome::Pass
                || r.details.get("verdict").and_then(|v| v.as_str()) == Some("refused")
        })
        .map(|r| format!("{} on {}", r.case, r.kernel))
        .collect()
}
