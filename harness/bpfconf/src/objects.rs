//! `bpfconf objects FILE.bpf.o…`: your own BPF objects on every kernel. Each column (the host
//! and one VM per selected kernel) prepares every object once and loads each program alone from
//! it, one record per program: the verdict (a refusal is the program's answer on that kernel,
//! `details.verdict`, not a failure unless `--min-kernel` makes it one), errno, the verifier's
//! key line and statistics, the JIT's size, the whole log. Its run is read like the suite's,
//! programs as the cases.

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use libbpf_rs::ObjectBuilder;
use loader::load::LogLevel;
use object::elf::EM_BPF;
use record::{Outcome, Record};
use selftests::prepared::{self, OpenOptions, Prepared, Request};

use crate::columns::watch;
use crate::kernels::{KernelSpec, fetch::fetch};
use crate::report::views::records_table;
use crate::run::{Run, kernel_order};
use crate::table::Table;
use crate::vm;

/// A column's timeout.
const TIMEOUT: Duration = Duration::from_secs(600);

/// Checks that `path` is a BPF ELF object libbpf can open; returns its program names.
pub fn check(path: &Path) -> Result<Vec<String>> {
    let bytes = fs::read(path).with_context(|| format!("{}: cannot read it", path.display()))?;
    let machine =
        elf_machine(&bytes).with_context(|| format!("{}: not an ELF file", path.display()))?;
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

/// The machine an ELF file is built for (`e_machine`); `None` when `bytes` is no ELF file.
fn elf_machine(bytes: &[u8]) -> Option<u16> {
    use object::read::elf::FileHeader;
    use object::{Endianness, FileKind, elf};
    match FileKind::parse(bytes).ok()? {
        FileKind::Elf32 => {
            let header = elf::FileHeader32::<Endianness>::parse(bytes).ok()?;
            Some(header.e_machine(header.endian().ok()?))
        }
        FileKind::Elf64 => {
            let header = elf::FileHeader64::<Endianness>::parse(bytes).ok()?;
            Some(header.e_machine(header.endian().ok()?))
        }
        _ => None,
    }
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
    let mut columns = Vec::new();
    if opts.host {
        let id = record::kernel_id(&record::kernel_release());
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.arg("objects-load").args(args(&id));
        let log = opts.run_dir.join(format!("{id}.log"));
        let run = watch::watch(cmd, TIMEOUT, &log, |_| {})?;
        columns.push((id, run.total.as_secs_f64(), run.problem(TIMEOUT)));
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
        let run = watch::watch(vm::command(&config, &k.id)?, TIMEOUT, &log, |_| {})?;
        columns.push((k.id.clone(), run.total.as_secs_f64(), run.problem(TIMEOUT)));
    }
    Ok(columns)
}

/// Loads every program of each object alone, on the running kernel, writing one record per
/// program (`<object>::<program>`) into `results` for column `kernel`. Each object is opened and
/// prepared once and its programs loaded from it (`selftests::prepared`, what the kernel's
/// selftests corpus uses): a program alone loads even when the object's prog arrays or maps of
/// maps name other programs.
pub fn load_all(files: &[PathBuf], kernel: &str, results: &Path) -> Result<()> {
    selftests::raise_memlock();
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
        (Some(fd), _) => (true, loader::load::prog_size(fd.as_fd())),
        (None, Some(o)) => o
            .progs()
            .find(|p| p.name().to_string_lossy() == program)
            .map_or((false, None), |p| {
                (true, loader::load::prog_size(p.as_fd()))
            }),
        (None, None) => (false, None),
    };
    let mut r = Record::runner("", "", Outcome::Pass, None);
    r.prog_type = program_type(bytes, program);
    let key_line = (!loaded).then(|| selftests::exec::refusal(&load));
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
    let mut outcome = loader::load::LoadOutcome {
        loaded,
        errno: load.errno.map(loader::errno::name),
        failed_program: (!loaded).then(|| program.to_owned()),
        message: key_line,
        ..Default::default()
    };
    outcome.programs.insert(
        program.to_owned(),
        record::ProgramLog {
            stats: loader::load::parse_stats(&load.log),
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
                .and_then(|p| features::prog_type_str(p.prog_type() as u32))
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
pub fn stats_markdown(run: &Run) -> String {
    records_table(run, "program", |r| {
        let insns = (r.loads.iter())
            .flat_map(|l| l.programs.values())
            .filter_map(|p| p.stats.as_ref())
            .map(|s| s.processed_insns.to_string())
            .next()
            .unwrap_or_else(|| "—".into());
        Some((&r.case, insns))
    })
}

/// Each column's seconds and the first line of its problem.
pub fn columns_markdown(columns: &[(String, f64, Option<String>)]) -> String {
    let mut table = Table::new(["kernel", "s", "problem"]);
    for (id, secs, problem) in columns {
        let problem = problem.as_deref().and_then(|p| p.lines().next());
        table.row([
            id.clone(),
            format!("{secs:.1}"),
            problem.unwrap_or("").to_owned(),
        ]);
    }
    table.to_string()
}

/// The programs refused on a kernel at or past `min` (`6.1`; the host's column by its release).
pub fn refused_since(run: &Run, min: &str) -> Vec<String> {
    let at_least = |kernel: &str| {
        let version = kernel.strip_prefix("host-").unwrap_or(kernel);
        kernel_order(version) >= kernel_order(min)
    };
    let refused = |cell: &crate::run::Cell| {
        cell.outcome != Outcome::Pass
            || (cell.record.as_ref()).and_then(|r| r.details.get("verdict")?.as_str())
                == Some("refused")
    };
    (run.cells())
        .filter(|(_, kernel, cell)| refused(cell) && at_least(kernel))
        .map(|(case, kernel, _)| format!("{case} on {kernel}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is not a BPF object is named with the reason, before libbpf sees it.
    #[test]
    fn only_bpf_elf_objects_pass_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text.bpf.o");
        fs::write(&text, "not elf").unwrap();
        let e = format!("{:#}", check(&text).unwrap_err());
        assert_eq!(e, format!("{}: not an ELF file", text.display()));
        // This test binary: an ELF object for x86-64 (62).
        let exe = std::env::current_exe().unwrap();
        let e = format!("{:#}", check(&exe).unwrap_err());
        assert!(
            e.ends_with(": an ELF object for machine 62, not BPF (247)"),
            "{e}"
        );
        let mut truncated = fs::read(&exe).unwrap();
        truncated.truncate(40);
        fs::write(&text, truncated).unwrap();
        assert!(format!("{:#}", check(&text).unwrap_err()).ends_with(": not an ELF file"));
    }
}
