//! The running kernel: its release, the id that results and snapshots are keyed by, BTF and config.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use record::KernelBuild;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The environment variable naming a kernel config file to read when neither `/proc/config.gz`
/// nor `/boot/config-<release>` exists (the matrix sets it inside VMs to the config kept from the
/// kernel's package).
pub const KCONFIG_ENV: &str = "BPFCONF_KCONFIG";

/// Test-only: the running kernel taken for another build, with this config file (read before the
/// kernel's own) and a build id made from it (`harness/bpfconf/tests/another_build.rs`).
pub const FAULT_KCONFIG_ENV: &str = "BPFCONF_FAULT_KCONFIG";

/// What the suite knows about the kernel it runs on.
#[derive(Debug, Serialize)]
pub struct Kernel {
    /// `uname -r`, e.g. `6.1.0-50-amd64`.
    pub release: String,
    /// The matrix id: `BPFCONF_KERNEL` when set, else `M.m` for a Debian kernel and `host-M.m` otherwise.
    pub id: String,
    /// `/sys/kernel/btf/vmlinux` exists.
    pub btf: bool,
    /// `uname -v`, e.g. `#1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2025-…)`: where Debian names
    /// the upstream version its `6.1.0-50` release is built from.
    #[serde(skip)]
    pub build: String,
    #[serde(skip)]
    config: Config,
    /// Which build this is (build id, config digest, `/proc/version`).
    #[serde(skip)]
    pub fingerprint: KernelBuild,
}

/// The kernel's build configuration, where it was found and where the harness looked.
#[derive(Debug, Default)]
pub struct Config {
    /// Option → value (`y`, `m`, a number…); `None` when no file could be read.
    pub options: Option<HashMap<String, String>>,
    /// The file it came from.
    pub source: Option<String>,
    /// Every place looked at, in order (and why each failed).
    pub searched: Vec<String>,
}

impl Kernel {
    /// The running kernel (read once per process).
    pub fn current() -> &'static Kernel {
        static KERNEL: OnceLock<Kernel> = OnceLock::new();
        KERNEL.get_or_init(|| {
            let uname = nix::sys::utsname::uname().ok();
            let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
                uname
                    .as_ref()
                    .map(|u| f(u).to_string_lossy().into_owned())
                    .unwrap_or_else(|| "unknown".into())
            };
            let release = field(|u| u.release());
            let id = record::kernel_id(&release);
            let config = Config::read(&release);
            let config_sha256 = config.options.as_ref().map(config_digest);
            let build_id = if config.source.is_some() && config.source == env(FAULT_KCONFIG_ENV) {
                config_sha256.as_ref().map(|digest| digest[..40].to_owned())
            } else {
                fs::read("/sys/kernel/notes")
                    .ok()
                    .and_then(|notes| gnu_build_id(&notes))
            };
            Kernel {
                btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
                fingerprint: KernelBuild {
                    build_id,
                    config_sha256,
                    version: fs::read_to_string("/proc/version")
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                },
                config,
                build: field(|u| u.version()),
                release,
                id,
            }
        })
    }

    /// A config option's value (`y`, `m`, a number…); `None` when unset or the config is unreadable.
    pub fn config(&self, option: &str) -> Option<&str> {
        self.config
            .options
            .as_ref()?
            .get(option)
            .map(String::as_str)
    }

    /// Whether the kernel's build config could be read.
    pub fn config_known(&self) -> bool {
        self.config.options.is_some()
    }

    /// The kernel's build config and where it came from.
    pub fn build_config(&self) -> &Config {
        &self.config
    }
}

impl Config {
    /// Reads `/proc/config.gz`, else `/boot/config-<release>`, else the file named by
    /// [`KCONFIG_ENV`]; plain or gzip-compressed. [`FAULT_KCONFIG_ENV`] comes before them all.
    pub fn read(release: &str) -> Config {
        let places: Vec<String> = (env(FAULT_KCONFIG_ENV).into_iter())
            .chain([
                "/proc/config.gz".to_owned(),
                format!("/boot/config-{release}"),
            ])
            .collect();
        Config::search(&places, env(KCONFIG_ENV))
    }

    /// The first of `places`, then `env_file` (the value of [`KCONFIG_ENV`]), that reads.
    fn search(places: &[String], env_file: Option<String>) -> Config {
        let mut searched = Vec::new();
        let unset = env_file.is_none();
        for place in places.iter().cloned().chain(env_file) {
            match read_text(Path::new(&place)) {
                Ok(text) => {
                    searched.push(place.clone());
                    return Config {
                        options: Some(parse(&text)),
                        source: Some(place),
                        searched,
                    };
                }
                Err(e) => searched.push(format!("{place} ({e})")),
            }
        }
        if unset {
            searched.push(format!("${KCONFIG_ENV} (not set)"));
        }
        Config {
            options: None,
            source: None,
            searched,
        }
    }
}

/// The GNU build id (`NT_GNU_BUILD_ID`) among the kernel image's ELF notes, hex.
fn gnu_build_id(notes: &[u8]) -> Option<String> {
    use object::elf::{FileHeader64, NT_GNU_BUILD_ID};
    use object::read::elf::NoteIterator;
    let endian = object::NativeEndian;
    let mut notes =
        NoteIterator::<FileHeader64<object::NativeEndian>>::new(endian, 4, notes).ok()?;
    while let Ok(Some(note)) = notes.next() {
        if note.name() == b"GNU" && note.n_type(endian) == NT_GNU_BUILD_ID {
            return Some(note.desc().iter().map(|b| format!("{b:02x}")).collect());
        }
    }
    None
}

/// sha256 of a config's options as sorted `CONFIG_X=value` lines: comments, order and the
/// file's compression do not change it.
fn config_digest(options: &HashMap<String, String>) -> String {
    let mut lines: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    lines.sort();
    let digest = Sha256::digest(lines.concat().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file's text, gunzipped when it starts with the gzip magic.
fn read_text(path: &Path) -> std::io::Result<String> {
    let bytes = fs::read(path)?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text)?;
        Ok(text)
    } else {
        String::from_utf8(bytes).map_err(std::io::Error::other)
    }
}

/// `CONFIG_X=value` lines (quotes stripped); comments (`# CONFIG_Y is not set`) and blank lines
/// are skipped, so an unset option is simply absent.
pub fn parse(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// A variable of the environment, unless unset or empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The kernel's name for a program type (`socket_filter`, `sched_cls`, …), as bpftool prints it.
pub fn prog_type_name(ty: libbpf_rs::ProgramType) -> String {
    features::prog_type_str(ty as u32).unwrap_or_else(|| format!("{ty:?}").to_lowercase())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// The notes of a Firecracker 6.18 guest kernel (`/sys/kernel/notes`): the build id, the
    /// Linux banner and Xen's notes.
    #[test]
    fn finds_the_gnu_build_id_among_the_notes() {
        let mut notes = Vec::new();
        let mut note = |name: &[u8], kind: u32, desc: &[u8]| {
            notes.extend((name.len() as u32 + 1).to_ne_bytes());
            notes.extend((desc.len() as u32).to_ne_bytes());
            notes.extend(kind.to_ne_bytes());
            notes.extend(name);
            notes.resize(notes.len() + 4 - name.len() % 4, 0);
            notes.extend(desc);
            notes.resize(notes.len().next_multiple_of(4), 0);
        };
        note(b"Xen", 18, &[0, 0x2f, 0x58, 0x03, 0, 0, 0, 0]);
        note(b"GNU", 3, &[0xfa, 0x36, 0x77, 0x6b, 0x59, 0xbf]);
        note(b"Linux", 0x100, b"6.18.44\0");
        assert_eq!(gnu_build_id(&notes).as_deref(), Some("fa36776b59bf"));
        assert_eq!(gnu_build_id(&notes[..20]), None);
        assert_eq!(gnu_build_id(&[]), None);
    }

    #[test]
    fn the_config_digest_ignores_comments_and_order() {
        let a = parse("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\n");
        let b = parse("#\nCONFIG_C=m\nCONFIG_A=y\n");
        assert_eq!(config_digest(&a), config_digest(&b));
        assert_ne!(config_digest(&a), config_digest(&parse("CONFIG_A=y\n")));
    }

    #[test]
    fn parses_values_and_skips_unset_options() {
        let config = parse(
            "#\n# Automatically generated file\n#\nCONFIG_BPF=y\nCONFIG_NET_CLS_BPF=m\n\
             # CONFIG_NET_ACT_BPF is not set\nCONFIG_LOCALVERSION=\"-fc\"\nCONFIG_HZ=250\n\n",
        );
        assert_eq!(config.get("CONFIG_BPF").map(String::as_str), Some("y"));
        assert_eq!(
            config.get("CONFIG_NET_CLS_BPF").map(String::as_str),
            Some("m")
        );
        assert_eq!(
            config.get("CONFIG_LOCALVERSION").map(String::as_str),
            Some("-fc")
        );
        assert_eq!(config.get("CONFIG_HZ").map(String::as_str), Some("250"));
        assert!(!config.contains_key("CONFIG_NET_ACT_BPF"));
        assert!(!config.contains_key("# CONFIG_NET_ACT_BPF is not set"));
        assert_eq!(config.len(), 4);
    }

    #[test]
    fn reads_plain_and_gzip_files() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("config");
        fs::write(&plain, "CONFIG_BPF_SYSCALL=y\n").unwrap();
        let gz = dir.path().join("config.gz");
        let mut encoder =
            flate2::write::GzEncoder::new(fs::File::create(&gz).unwrap(), Default::default());
        encoder.write_all(b"CONFIG_BPF_SYSCALL=m\n").unwrap();
        encoder.finish().unwrap();
        assert_eq!(read_text(&plain).unwrap(), "CONFIG_BPF_SYSCALL=y\n");
        assert_eq!(read_text(&gz).unwrap(), "CONFIG_BPF_SYSCALL=m\n");
        assert!(read_text(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn searches_in_order_and_falls_back_to_the_env_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        fs::write(path("boot"), "CONFIG_A=y\n").unwrap();
        fs::write(path("env"), "CONFIG_A=m\n").unwrap();

        let found = Config::search(&[path("proc"), path("boot")], Some(path("env")));
        assert_eq!(found.source, Some(path("boot")));
        assert_eq!(found.options.unwrap()["CONFIG_A"], "y");
        assert_eq!(found.searched.len(), 2, "{:?}", found.searched);

        let found = Config::search(&[path("proc")], Some(path("env")));
        assert_eq!(found.source, Some(path("env")));
        assert_eq!(found.options.unwrap()["CONFIG_A"], "m");

        let none = Config::search(&[path("proc")], None);
        assert!(none.options.is_none() && none.source.is_none());
        assert!(
            none.searched
                .iter()
                .any(|s| s.contains("BPFCONF_KCONFIG (not set)"))
        );
        assert!(none.searched.iter().any(|s| s.starts_with(&path("proc"))));
    }
}
