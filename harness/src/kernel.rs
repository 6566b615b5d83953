//! The running kernel: its release, the id that results and snapshots are keyed by, BTF and config.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use serde::Serialize;

/// What the suite knows about the kernel it runs on.
#[derive(Debug, Serialize)]
pub struct Kernel {
    /// `uname -r`, e.g. `6.1.0-50-amd64`.
    pub release: String,
    /// The matrix id: `BPFCONF_KERNEL` when set, else `M.m` for a Debian kernel and `host-M.m` otherwise.
    pub id: String,
    /// `/sys/kernel/btf/vmlinux` exists.
    pub btf: bool,
    #[serde(skip)]
    config: Option<HashMap<String, String>>,
}

impl Kernel {
    /// The running kernel (read once per process).
    pub fn current() -> &'static Kernel {
        static KERNEL: OnceLock<Kernel> = OnceLock::new();
        KERNEL.get_or_init(|| {
            let release = nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_else(|_| "unknown".into());
            let id = std::env::var("BPFCONF_KERNEL")
                .ok()
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| derive_id(&release));
            Kernel {
                btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
                config: read_config(&release),
                release,
                id,
            }
        })
    }

    /// A config option's value (`y`, `m`, a number…); `None` when unset or the config is unreadable.
    pub fn config(&self, option: &str) -> Option<&str> {
        self.config.as_ref()?.get(option).map(String::as_str)
    }

    /// Whether the kernel's build config could be read (`/proc/config.gz` or `/boot/config-<release>`).
    pub fn config_known(&self) -> bool {
        self.config.is_some()
    }
}

/// `6.1.0-50-amd64` → `6.1`; any release that is not a Debian build → `host-M.m`.
pub fn derive_id(release: &str) -> String {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().unwrap_or("0");
    let minor = parts.next().unwrap_or("0");
    if release.ends_with("-amd64") || release.ends_with("-arm64") {
        format!("{major}.{minor}")
    } else {
        format!("host-{major}.{minor}")
    }
}

fn read_config(release: &str) -> Option<HashMap<String, String>> {
    let text = fs::File::open("/proc/config.gz")
        .ok()
        .and_then(|f| {
            let mut text = String::new();
            flate2::read::GzDecoder::new(f)
                .read_to_string(&mut text)
                .ok()
                .map(|_| text)
        })
        .or_else(|| fs::read_to_string(format!("/boot/config-{release}")).ok())?;
    Some(
        text.lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::derive_id;

    #[test]
    fn ids_follow_debian_and_host_releases() {
        assert_eq!(derive_id("6.1.0-50-amd64"), "6.1");
        assert_eq!(derive_id("6.12.107+deb13-amd64"), "6.12");
        assert_eq!(derive_id("5.10.0-32-amd64"), "5.10");
        assert_eq!(derive_id("6.18.44-fc-v782"), "host-6.18");
    }
}
