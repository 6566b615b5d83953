//! Loading many programs of one object fast: the object is opened and prepared once by libbpf
//! (`bpf_object__prepare`: ELF, BTF, CO-RE and call relocations, maps created, the object's BTF
//! loaded into the kernel), its companions (auxiliary programs, the targets of its prog arrays)
//! loaded with it by libbpf, and every other program is then loaded alone, as often as asked, from
//! the instructions libbpf prepared (`BPF_PROG_LOAD` with the program's type, expected attach
//! type, flags, BTF and its func/line info, as `bpf_object_load_prog` passes them).
//!
//! What libbpf adds to a program only while loading it (`libbpf_prepare_prog_load`) is added
//! here the same way: the sleepable and XDP-frags flags of its section and the BTF id of a
//! tracing or LSM program's target in vmlinux (found by the same name and prefix). What that does
//! not cover (extension and struct_ops programs, targets outside vmlinux, USDT, calls of module
//! kfuncs) is loaded by libbpf itself, in a fresh object of its own ([`fresh`]), exactly as
//! `test_loader.c` loads every program.
//!
//! Opening an object (its BTF, and for kfuncs, ksyms and CO-RE the running kernel's vmlinux BTF,
//! which libbpf parses for each object) costs ten times the load of a typical verifier test;
//! loading from a prepared object is what makes the kernel's selftests cheap enough for every
//! column of the matrix.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use libbpf_rs::{AsRawLibbpf, Object, ObjectBuilder, OpenObject};
use libbpf_sys as sys;
use loader::insn::{CALL, Insn, JMP, PSEUDO_KFUNC_CALL};

/// What libbpf adds to a program's load at load time.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadTime {
    /// Flags of its section.
    pub flags: u32,
    /// Its BTF attach target in vmlinux.
    pub attach_btf_id: u32,
}

/// The running kernel's vmlinux BTF ids of FUNCs and TYPEDEFs by name (parsed once per process,
/// as libbpf parses it once per object).
fn vmlinux_id(name: &str, typedef: bool) -> Option<u32> {
    use libbpf_rs::btf::{Btf, BtfKind, BtfType};
    static INDEX: OnceLock<HashMap<(bool, String), u32>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let Ok(btf) = Btf::from_vmlinux() else {
            return HashMap::new();
        };
        (1..btf.len() as u32)
            .filter_map(|id| btf.type_by_id::<BtfType<'_>>(id.into()))
            .filter(|t| matches!(t.kind(), BtfKind::Func | BtfKind::Typedef))
            .filter_map(|t| {
                let key = (
                    t.kind() == BtfKind::Typedef,
                    t.name()?.to_string_lossy().into_owned(),
                );
                Some(key).map(|k| (k, t.type_id().into()))
            })
            .fold(HashMap::new(), |mut m, (k, id)| {
                m.entry(k).or_insert(id);
                m
            })
    });
    index.get(&(typedef, name.to_owned())).copied()
}

/// How to open an object.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// The object's name (`bpf_object_open_opts.object_name`, the skeleton's name).
    pub name: String,
    /// BTF for CO-RE relocations instead of the kernel's (`__btf_path`).
    pub btf_custom_path: Option<std::path::PathBuf>,
    /// Create only the maps an unprivileged process may create (`test_loader.c` in unprivileged
    /// mode: `is_unpriv_capable_map`).
    pub unprivileged: bool,
}

/// One program load's result.
#[derive(Debug, Default)]
pub struct ProgLoad {
    /// The loaded program.
    pub fd: Option<OwnedFd>,
    /// The errno of a refused load.
    pub errno: Option<i32>,
    /// The verifier log (at the requested level; level 1 after a refusal at level 0).
    pub log: String,
    /// libbpf's complaint when the load failed before or outside the verifier.
    pub libbpf: Option<String>,
    /// Everything libbpf said while a fresh load failed.
    pub messages: String,
}

/// What one load asks for.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// `prog_flags` ORed into the program's own.
    pub flags: u32,
    /// Verifier log level (0: none unless refused, then 1, as libbpf retries).
    pub log_level: u32,
}

/// An object opened and prepared once, its companions loaded.
pub struct Prepared {
    stage: Stage,
    license: CString,
    /// Initial contents of the object's global-data maps (`.data`, `.bss`, …), by map name.
    pub initial: Vec<(String, Vec<u8>)>,
}

enum Stage {
    Prepared(OpenObject),
    Loaded(Object),
}

impl Prepared {
    /// Opens and prepares `bytes`; with `companions`, also loads those programs through libbpf
    /// (which fills in the prog arrays that name them). `Err` holds libbpf's complaint.
    pub fn new(bytes: &[u8], opts: &OpenOptions, companions: Option<&[String]>) -> Result<Self> {
        let license = license(bytes);
        let (prepared, messages) = loader::load::with_libbpf_messages(|| -> Result<Self> {
            let mut open = open(bytes, opts)?;
            for mut p in open.progs_mut() {
                p.set_autoload(true);
            }
            let initial = open
                .maps()
                .filter(|m| is_global_data(&m.name().to_string_lossy()))
                .filter_map(|m| {
                    let name = m.name().to_string_lossy().into_owned();
                    Some((name, m.initial_value()?.to_vec()))
                })
                .collect();
            // SAFETY: `open` owns a valid, opened bpf_object; prepare only moves it on.
            let ret = unsafe { sys::bpf_object__prepare(open.as_libbpf_object().as_ptr()) };
            if ret != 0 {
                anyhow::bail!("preparing: {}", std::io::Error::from_raw_os_error(-ret));
            }
            let stage = match companions {
                None => Stage::Prepared(open),
                Some(names) => {
                    for mut p in open.progs_mut() {
                        let name = p.name().to_string_lossy().into_owned();
                        p.set_autoload(names.contains(&name));
                    }
                    Stage::Loaded(open.load().context("loading its companion programs")?)
                }
            };
            Ok(Prepared {
                stage,
                license: license.clone(),
                initial,
            })
        });
        prepared
            .map_err(|e| anyhow::anyhow!("{}", complaint(&messages).unwrap_or(format!("{e:#}"))))
    }

    fn object(&self) -> NonNull<sys::bpf_object> {
        match &self.stage {
            Stage::Prepared(o) => o.as_libbpf_object(),
            Stage::Loaded(o) => o.as_libbpf_object(),
        }
    }

    /// The loaded object (when companions were asked for), for its maps.
    pub fn loaded(&self) -> Option<&Object> {
        match &self.stage {
            Stage::Loaded(o) => Some(o),
            Stage::Prepared(_) => None,
        }
    }

    /// The program named `name`.
    fn program(&self, name: &str) -> Option<NonNull<sys::bpf_program>> {
        let cname = CString::new(name).ok()?;
        // SAFETY: the object is valid for `self`'s lifetime; the name is NUL-terminated.
        let p = unsafe {
            sys::bpf_object__find_program_by_name(self.object().as_ptr(), cname.as_ptr())
        };
        NonNull::new(p)
    }

    /// What libbpf would add to the load of `name` while loading it (`libbpf_prepare_prog_load`:
    /// its section's sleepable and XDP-frags flags, its BTF attach target in vmlinux); `Err`
    /// says why only libbpf can load it.
    pub fn load_time(&self, name: &str) -> Result<LoadTime, String> {
        let p = self
            .program(name)
            .ok_or_else(|| format!("no program {name}"))?;
        // SAFETY: `p` is a program of the live object; the slices it hands out live as long.
        let (ty, attach, section, insns, funcs, lines) = unsafe {
            let p = p.as_ptr();
            let section = CStr::from_ptr(sys::bpf_program__section_name(p))
                .to_string_lossy()
                .into_owned();
            let insns = std::slice::from_raw_parts(
                sys::bpf_program__insns(p),
                sys::bpf_program__insn_cnt(p) as usize,
            );
            let funcs =
                sys::bpf_program__func_info_cnt(p) > 0 && sys::bpf_program__func_info(p).is_null();
            let lines =
                sys::bpf_program__line_info_cnt(p) > 0 && sys::bpf_program__line_info(p).is_null();
            let attach = sys::bpf_program__expected_attach_type(p);
            (
                sys::bpf_program__type(p),
                attach,
                section,
                insns,
                funcs,
                lines,
            )
        };
        if [sys::BPF_PROG_TYPE_STRUCT_OPS, sys::BPF_PROG_TYPE_EXT].contains(&ty) {
            let ty = features::prog_type_str(ty).unwrap_or_default();
            return Err(format!("{ty} programs get their target from libbpf"));
        }
        let section = section.trim_start_matches('?');
        let (kind, target) = section.split_once('/').unwrap_or((section, ""));
        if kind.starts_with("usdt") {
            return Err(format!("section {section}: libbpf decides the attach type"));
        }
        let module_kfunc = insns
            .iter()
            .map(Insn::from_bpf)
            .any(|i| i.code == JMP | CALL && i.src == PSEUDO_KFUNC_CALL && i.off != 0);
        if module_kfunc {
            return Err("calls a module's kfunc (libbpf passes the module's BTF)".into());
        }
        if funcs || lines {
            return Err("its .BTF.ext records have a size the kernel API does not take".into());
        }
        let mut load = LoadTime::default();
        // The sections libbpf marks SEC_SLEEPABLE and SEC_XDP_FRAGS.
        if kind.ends_with(".s") || ty == sys::BPF_PROG_TYPE_SYSCALL {
            load.flags |= sys::BPF_F_SLEEPABLE;
        }
        if ty == sys::BPF_PROG_TYPE_XDP && kind.starts_with("xdp.frags") {
            load.flags |= sys::BPF_F_XDP_HAS_FRAGS;
        }
        if [sys::BPF_PROG_TYPE_TRACING, sys::BPF_PROG_TYPE_LSM].contains(&ty) {
            // find_attach_btf_id: the target's name with its attach type's prefix, in vmlinux.
            if target.is_empty() || target.contains(':') {
                return Err(format!("section {section}: libbpf finds the attach target"));
            }
            let (prefix, typedef) = match attach {
                sys::BPF_TRACE_RAW_TP => ("btf_trace_", true),
                sys::BPF_LSM_MAC | sys::BPF_LSM_CGROUP => ("bpf_lsm_", false),
                sys::BPF_TRACE_ITER => ("bpf_iter_", false),
                _ => ("", false),
            };
            load.attach_btf_id = vmlinux_id(&format!("{prefix}{target}"), typedef)
                .ok_or_else(|| format!("{target} is not in vmlinux BTF: libbpf looks further"))?;
        }
        Ok(load)
    }

    /// Loads program `name` alone from the prepared instructions with what [`Self::load_time`]
    /// found.
    pub fn load(&self, name: &str, req: Request, at: LoadTime, log: &mut [u8]) -> ProgLoad {
        let Some(p) = self.program(name) else {
            return ProgLoad {
                libbpf: Some(format!("no program {name}")),
                ..Default::default()
            };
        };
        let obj = self.object().as_ptr();
        let p = p.as_ptr();
        // SAFETY: the object and its program are live as long as `self`; the name, the
        // instructions and the func/line info records (of the kernel's record sizes, checked by
        // their getters) are the program's own, and the BTF fd is the object's.
        let (prog_type, name, insns, btf, expected_attach_type, flags, kern_version) = unsafe {
            let btf = sys::bpf_object__btf(obj);
            let btf_fd = if btf.is_null() { -1 } else { sys::btf__fd(btf) };
            let btf = (btf_fd >= 0).then(|| loader::prog::Btf {
                fd: BorrowedFd::borrow_raw(btf_fd),
                func_info: records(
                    sys::bpf_program__func_info(p),
                    sys::bpf_program__func_info_cnt(p),
                ),
                line_info: Some(records(
                    sys::bpf_program__line_info(p),
                    sys::bpf_program__line_info_cnt(p),
                )),
            });
            (
                sys::bpf_program__type(p),
                CStr::from_ptr(sys::bpf_program__name(p)),
                records(
                    sys::bpf_program__insns(p),
                    sys::bpf_program__insn_cnt(p) as u32,
                ),
                btf,
                sys::bpf_program__expected_attach_type(p),
                sys::bpf_program__flags(p),
                sys::bpf_object__kversion(obj),
            )
        };
        let mut load = loader::prog::Load::new(prog_type, &self.license, insns);
        load.name = Some(name);
        load.expected_attach_type = expected_attach_type;
        load.flags = flags | req.flags | at.flags;
        load.attach_btf_id = at.attach_btf_id;
        load.kern_version = kern_version;
        load.btf = btf;
        // libbpf retries a refusal at level 0 at level 1, for the log.
        load.log_level = req.log_level;
        log[0] = 0;
        let loaded = loader::prog::load(&load, log);
        let (fd, errno) = match loaded.fd {
            Ok(fd) => (Some(fd), None),
            Err(e) => (None, Some(e as i32)),
        };
        ProgLoad {
            fd,
            errno,
            log: text(log),
            ..Default::default()
        }
    }
}

/// The `count` records at `ptr` (none when it is null).
///
/// # Safety
/// A non-null `ptr` points at `count` records that live as long as `'a`.
unsafe fn records<'a, T>(ptr: *const T, count: u32) -> &'a [T] {
    if ptr.is_null() || count == 0 {
        return &[];
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(ptr, count as usize) }
}

/// Opens `bytes` as libbpf would for a skeleton of `opts.name`.
fn open(bytes: &[u8], opts: &OpenOptions) -> Result<OpenObject> {
    let mut builder = ObjectBuilder::default();
    builder.name(&opts.name)?;
    if let Some(path) = &opts.btf_custom_path {
        builder.btf_custom_path(path)?;
    }
    let mut open = builder.open_memory(bytes)?;
    if opts.unprivileged {
        for mut m in open.maps_mut() {
            let capable = unprivileged_map(m.map_type(), m.map_flags());
            m.set_autocreate(capable)?;
        }
    }
    Ok(open)
}

/// `is_unpriv_capable_map` of `test_loader.c`.
fn unprivileged_map(ty: libbpf_rs::MapType, flags: u32) -> bool {
    use libbpf_rs::MapType as T;
    match ty {
        T::Hash | T::PercpuHash | T::HashOfMaps => flags & sys::BPF_F_ZERO_SEED == 0,
        T::PercpuCgroupStorage
        | T::Array
        | T::RingBuf
        | T::ProgArray
        | T::CgroupArray
        | T::PercpuArray
        | T::UserRingBuf
        | T::ArrayOfMaps
        | T::CgroupStorage
        | T::PerfEventArray => true,
        _ => false,
    }
}

/// Loads program `name` with `companions` through libbpf in a fresh object of its own, as
/// `test_loader.c` loads every program; returns the object (when it loaded) and the result.
pub fn fresh(
    bytes: &[u8],
    opts: &OpenOptions,
    name: &str,
    companions: &[String],
    req: Request,
    log: &mut [u8],
) -> (Option<Object>, ProgLoad) {
    log[0] = 0;
    let (result, messages) = loader::load::with_libbpf_messages(|| -> Result<Object> {
        let mut open = open(bytes, opts)?;
        for mut p in open.progs_mut() {
            let pname = p.name().to_string_lossy().into_owned();
            p.set_autoload(pname == name || companions.contains(&pname));
            if pname == name {
                let raw = p.as_libbpf_object().as_ptr();
                // SAFETY: `raw` is a program of the open object; the log buffer outlives the
                // load below, which is the only use libbpf makes of it.
                unsafe {
                    sys::bpf_program__set_log_buf(raw, log.as_mut_ptr().cast(), log.len() as _);
                    let flags = sys::bpf_program__flags(raw) | req.flags;
                    sys::bpf_program__set_flags(raw, flags);
                }
                p.set_log_level(req.log_level);
            }
        }
        Ok(open.load()?)
    });
    let log_text = text(log);
    match result {
        Ok(object) => (
            Some(object),
            ProgLoad {
                log: log_text,
                ..Default::default()
            },
        ),
        Err(e) => {
            let errno = e
                .downcast_ref::<libbpf_rs::Error>()
                .and_then(loader::errno::of_libbpf)
                .or(Some(libc::EINVAL));
            let refused_by_verifier = !log_text.is_empty();
            (
                None,
                ProgLoad {
                    fd: None,
                    errno,
                    log: log_text,
                    libbpf: (!refused_by_verifier)
                        .then(|| complaint(&messages).unwrap_or(format!("{e:#}"))),
                    messages,
                },
            )
        }
    }
}

/// libbpf's own complaint among its messages: the last warning that is not one of its generic
/// closing lines.
pub fn complaint(messages: &str) -> Option<String> {
    messages
        .lines()
        .filter_map(|l| l.strip_prefix("libbpf: "))
        .rfind(|l| {
            !l.contains("PROG LOAD LOG --")
                && !l.starts_with("failed to load object")
                && !l.contains("': failed to load: ")
                && !l.contains("try raising 'ulimit -l'")
        })
        .map(str::to_owned)
}

/// The suite's libbpf, `libbpf 1.7`.
pub fn libbpf_version() -> String {
    // SAFETY: plain getters of constants.
    let (major, minor) = unsafe { (sys::libbpf_major_version(), sys::libbpf_minor_version()) };
    format!("libbpf {major}.{minor}")
}

/// `.data`, `.bss`, `.data.*`… maps: what programs may write and a test run may dirty.
fn is_global_data(name: &str) -> bool {
    name.contains(".data") || name.contains(".bss")
}

/// The object's license (its `license` section), as libbpf passes it.
fn license(bytes: &[u8]) -> CString {
    use object::{Object as _, ObjectSection as _};
    object::File::parse(bytes)
        .ok()
        .and_then(|f| {
            f.section_by_name("license")?
                .data()
                .ok()
                .map(<[u8]>::to_vec)
        })
        .and_then(|d| CStr::from_bytes_until_nul(&d).ok().map(CStr::to_owned))
        .unwrap_or_default()
}

/// The NUL-terminated text in a log buffer.
fn text(log: &[u8]) -> String {
    CStr::from_bytes_until_nul(log)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(log).into_owned())
}

/// The object file's bytes.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}
