//! Which build of a kernel a column ran. Two machines can report the same `uname -r` and run
//! different builds (another config, other patches), so snapshots and the accepted baseline bind
//! to a build, not to a release.

use serde::{Deserialize, Serialize};

/// What identifies one kernel build.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelBuild {
    /// The GNU build id of the running kernel image (`/sys/kernel/notes`), hex: one per build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// sha256 of the kernel's build config (its `CONFIG_…=` lines, sorted), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sha256: Option<String>,
    /// `/proc/version`: release, compiler, build number and date.
    pub version: String,
}

impl KernelBuild {
    /// Whether `self` is the build `accepted`: the same build id where both have one, else the
    /// same config and `/proc/version`.
    pub fn is(&self, accepted: &KernelBuild) -> bool {
        match (&self.build_id, &accepted.build_id) {
            (Some(a), Some(b)) => a == b,
            _ => self.config_sha256 == accepted.config_sha256 && self.version == accepted.version,
        }
    }

    /// How `self` differs from `accepted`, for one line of a report (`None` when it is that
    /// build): `build id 1a2b3c4d5e6f (accepted: fa36776b59bf), another config`.
    pub fn difference(&self, accepted: &KernelBuild) -> Option<String> {
        if self.is(accepted) {
            return None;
        }
        let short = |id: &Option<String>| {
            id.as_deref()
                .map_or("unknown".to_owned(), |id| id.chars().take(12).collect())
        };
        let mut parts = vec![format!(
            "build id {} (accepted: {})",
            short(&self.build_id),
            short(&accepted.build_id)
        )];
        parts.push(
            if self.config_sha256.is_some() && self.config_sha256 == accepted.config_sha256 {
                "the same config".to_owned()
            } else {
                format!(
                    "another config ({} vs {})",
                    short(&self.config_sha256),
                    short(&accepted.config_sha256)
                )
            },
        );
        if self.version != accepted.version {
            parts.push(format!("/proc/version `{}`", self.version.trim()));
        }
        Some(parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(id: Option<&str>, config: &str, version: &str) -> KernelBuild {
        KernelBuild {
            build_id: id.map(str::to_owned),
            config_sha256: Some(config.to_owned()),
            version: version.to_owned(),
        }
    }

    #[test]
    fn the_build_id_decides_where_both_have_one() {
        let accepted = build(Some("fa36776b59bf96ad"), "c1", "Linux version 6.18.44 #1");
        assert!(build(Some("fa36776b59bf96ad"), "c2", "other").is(&accepted));
        assert_eq!(accepted.difference(&accepted), None);
        let other = build(Some("1a2b3c4d5e6f7788"), "c2", "Linux version 6.18.44 #1");
        assert!(!other.is(&accepted));
        assert_eq!(
            other.difference(&accepted).unwrap(),
            "build id 1a2b3c4d5e6f (accepted: fa36776b59bf), another config (c2 vs c1)"
        );
        // Without build ids: the config and /proc/version.
        assert!(build(None, "c1", "v").is(&build(None, "c1", "v")));
        assert!(!build(None, "c1", "v").is(&build(None, "c2", "v")));
        assert!(!build(None, "c1", "v2").is(&build(Some("x"), "c1", "v")));
    }
}
