//! The floors file (`kernels/floors.toml`, embedded), parsed once: the first release and the
//! config options of every kernel feature the suite uses, by feature id (`<kind>.<key>`).
//! `testkit::floors` decides outcomes from it; the kfunc probe takes its `[kfunc]` rows.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use serde::Deserialize;

/// One feature's floor.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floor {
    /// First mainline release with the feature (`None` for platform rows).
    pub since: Option<String>,
    /// Options it needs: `CONFIG_X` (y or m) or `CONFIG_X=y`.
    #[serde(default)]
    pub config: Vec<String>,
    /// Options it needs only from a later release on (option → release).
    #[serde(default)]
    pub config_since: BTreeMap<String, String>,
    /// For a helper only some program types may call, those types (`lsm`): where none of them
    /// is one libbpf can probe helpers of (it cannot load lsm, tracing, ext or struct_ops
    /// programs for that), the helper/kfunc matrix says so instead of probing.
    #[serde(default)]
    pub callers: Vec<String>,
    /// First mainline release without it.
    pub removed: Option<String>,
    /// Stable releases that dropped it too.
    #[serde(default)]
    pub removed_stable: Vec<String>,
    /// Stable releases of older series that got it too (a backport): from that patch level on,
    /// the series counts as past the floor.
    #[serde(default)]
    pub backported: Vec<String>,
    /// The commit that removed it.
    pub removed_by: Option<String>,
    /// Commit or release that introduced (or removed) it.
    #[serde(default)]
    pub source: String,
    /// Anything else a reader should know.
    pub note: Option<String>,
    /// Platform rows: what the machine lacks.
    pub reason: Option<String>,
}

impl Floor {
    /// Whether this row is about the machine, not the kernel.
    pub fn is_platform(&self) -> bool {
        self.reason.is_some()
    }

    /// The options a kernel of `version` needs for the feature: `config`, and each of
    /// `config_since` from its release on.
    pub fn config_at(&self, version: Version) -> Vec<String> {
        let later = self
            .config_since
            .iter()
            .filter(|(_, since)| Version::parse(since).is_some_and(|s| version.at_least(s)))
            .map(|(option, _)| option.clone());
        self.config.iter().cloned().chain(later).collect()
    }
}

/// All floors by feature id (`<kind>.<key>`).
pub fn table() -> &'static BTreeMap<String, Floor> {
    static TABLE: LazyLock<BTreeMap<String, Floor>> = LazyLock::new(|| {
        parse(include_str!("../../../kernels/floors.toml"))
            .unwrap_or_else(|e| panic!("kernels/floors.toml: {e}"))
    });
    &TABLE
}

fn parse(text: &str) -> Result<BTreeMap<String, Floor>, toml::de::Error> {
    let kinds: BTreeMap<String, BTreeMap<String, Floor>> = toml::from_str(text)?;
    Ok(kinds
        .into_iter()
        .flat_map(|(kind, rows)| {
            rows.into_iter()
                .map(move |(key, floor)| (format!("{kind}.{key}"), floor))
        })
        .collect())
}

/// The floor of `id`.
pub fn floor(id: &str) -> Option<&'static Floor> {
    table().get(id)
}

/// The first release of `id` (`"6.6"`), for reasons and snapshots.
pub fn since(id: &str) -> Option<&'static str> {
    floor(id)?.since.as_deref()
}

/// A kernel release as the floors compare it: `6.1`, or `6.1.176` when the patch level is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: Option<u32>,
}

impl Version {
    /// `"4.18"`, `"6.1.187"`, `"2.6.12"`.
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = match parts.next() {
            Some(p) => Some(p?),
            None => None,
        };
        parts.next().is_none().then_some(Version {
            major,
            minor,
            patch,
        })
    }

    /// The running kernel's version from `uname -r` (`6.12.107+deb13-amd64` → 6.12.107,
    /// `6.18.44-fc-v782` → 6.18.44) and `uname -v` for Debian's ABI-numbered releases
    /// (`6.1.0-50-amd64` built from "Debian 6.1.176-1" → 6.1.176; without it the patch level
    /// is unknown).
    pub fn of_kernel(release: &str, build: &str) -> Option<Version> {
        let numbers: Vec<u32> = release
            .split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map_while(|p| p.parse().ok())
            .collect();
        let (major, minor) = (*numbers.first()?, *numbers.get(1)?);
        let patch = numbers.get(2).copied();
        let abi_numbered = patch == Some(0)
            && release
                .split_once('-')
                .is_some_and(|(_, rest)| rest.starts_with(|c: char| c.is_ascii_digit()));
        if !abi_numbered {
            return Some(Version {
                major,
                minor,
                patch,
            });
        }
        let upstream = build
            .split_whitespace()
            .skip_while(|w| *w != "Debian")
            .nth(1)
            .and_then(|v| Version::parse(v.split('-').next()?))
            .filter(|v| (v.major, v.minor) == (major, minor) && v.patch.is_some());
        Some(upstream.unwrap_or(Version {
            major,
            minor,
            patch: None,
        }))
    }

    /// Whether `self` is `floor` or newer (an unknown patch level counts as 0).
    pub fn at_least(self, floor: Version) -> bool {
        (self.major, self.minor, self.patch.unwrap_or(0))
            >= (floor.major, floor.minor, floor.patch.unwrap_or(0))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.patch {
            Some(patch) => write!(f, "{}.{}.{patch}", self.major, self.minor),
            None => write!(f, "{}.{}", self.major, self.minor),
        }
    }
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;

    #[test]
    fn the_table_parses_and_every_row_is_complete() {
        let option = Regex::new(r"^CONFIG_[A-Z0-9_]+(=y)?$").unwrap();
        assert!(table().len() > 100, "{} rows", table().len());
        for (id, floor) in table() {
            if floor.is_platform() {
                assert!(
                    id.starts_with("platform."),
                    "{id}: a reason makes a platform row"
                );
                assert!(floor.since.is_none() && floor.config.is_empty(), "{id}");
                continue;
            }
            let since = floor.since.as_deref().unwrap_or_default();
            assert!(Version::parse(since).is_some(), "{id}: since {since:?}");
            assert!(!floor.source.is_empty(), "{id}: no source");
            assert!(!floor.config.is_empty(), "{id}: no config option");
            for need in &floor.config {
                assert!(option.is_match(need), "{id}: config {need:?}");
            }
            if let Some(removed) = &floor.removed {
                let removed = Version::parse(removed).expect("removed parses");
                assert!(removed.at_least(Version::parse(since).unwrap()), "{id}");
            }
            for stable in floor.removed_stable.iter().chain(&floor.backported) {
                let v = Version::parse(stable).expect("removed_stable/backported parses");
                assert!(v.patch.is_some(), "{id}: {stable} names no patch level");
            }
        }
    }

    #[test]
    fn kernel_versions_come_from_release_and_debian_build() {
        let v = |r, b| Version::of_kernel(r, b).map(|v| v.to_string());
        let debian_6_1 = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2025-11-02)";
        assert_eq!(v("6.1.0-50-amd64", debian_6_1).as_deref(), Some("6.1.176"));
        assert_eq!(v("6.1.0-50-amd64", "#1 SMP").as_deref(), Some("6.1"));
        assert_eq!(
            v("5.10.0-32-amd64", "#1 SMP Debian 5.10.223-1 (2024-08-10)").as_deref(),
            Some("5.10.223")
        );
        // A Debian version of another series is not this kernel's.
        assert_eq!(
            v("6.1.0-50-amd64", "Debian 6.12.1-1").as_deref(),
            Some("6.1")
        );
        assert_eq!(v("6.12.107+deb13-amd64", "").as_deref(), Some("6.12.107"));
        assert_eq!(v("7.3.4+deb13-amd64", "").as_deref(), Some("7.3.4"));
        assert_eq!(
            v("6.18.44-fc-v782", "#1 SMP PREEMPT_DYNAMIC @0").as_deref(),
            Some("6.18.44")
        );
        assert_eq!(v("6.6", "").as_deref(), Some("6.6"));
        assert_eq!(v("unknown", ""), None);
        assert_eq!(
            Version::parse("2.6.12").map(|v| v.to_string()).as_deref(),
            Some("2.6.12")
        );
        assert_eq!(Version::parse("6.x"), None);
        assert!(
            Version::parse("6.1.187")
                .unwrap()
                .at_least(Version::parse("6.1").unwrap())
        );
        assert!(
            !Version::parse("6.1")
                .unwrap()
                .at_least(Version::parse("6.1.187").unwrap())
        );
    }
}
