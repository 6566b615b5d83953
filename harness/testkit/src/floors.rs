//! Feature floors (`kernels/floors.toml`, embedded): the first release and the config options of
//! every kernel feature the suite uses. Every path that can end a case `unsupported` goes through
//! [`missing`], which decides from the floor whether what the kernel said is a missing feature
//! (`unsupported`), a regression (`fail`: the kernel is past the floor with the options on) or not
//! decidable (`error`: the kernel config cannot be read).
//!
//! `BPFCONF_FAULT_MISSING=<id>[,<id>…]` makes the probes believe those features are missing
//! ([`has`]), to check that a kernel which loses one is caught.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::kernel::{self, Kernel};
use crate::outcome::{CaseError, CaseResult, Cause, Regression};

/// The environment variable of the fault switch.
pub const FAULT_ENV: &str = "BPFCONF_FAULT_MISSING";

pub use features::floors::{Floor, Version, floor, since, table};

/// Whether the fault switch names `id`.
pub fn faulted(id: &str) -> bool {
    static FAULTS: LazyLock<Vec<String>> =
        LazyLock::new(|| fault_list(&std::env::var(FAULT_ENV).unwrap_or_default()));
    FAULTS.iter().any(|f| f == id)
}

fn fault_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What a probe observed about `id`, unless the fault switch says it is missing.
pub fn has(id: &str, observed: bool) -> bool {
    observed && !faulted(id)
}

/// Whether the running kernel's release is at or past the floor of `id` and before any removal
/// (the config is not consulted): for expectations that changed with a release.
pub fn reached(id: &str) -> bool {
    let kernel = Kernel::current();
    let Some(version) = Version::of_kernel(&kernel.release, &kernel.build) else {
        return false;
    };
    floor(id).is_some_and(|f| {
        f.since
            .as_deref()
            .and_then(Version::parse)
            .is_some_and(|since| version.at_least(since))
            && removal(f, version).is_none()
    })
}

/// The outcome of a missing feature `id` whose absence the kernel showed as `said`: `fail` when
/// the running kernel is at or past the floor with the options on, `error` when its config cannot
/// be read, otherwise `unsupported` with the floor in the reason.
pub fn missing(id: &str, said: impl fmt::Display) -> CaseError {
    let kernel = Kernel::current();
    let said = if faulted(id) {
        format!("{FAULT_ENV} names {id} (fault injected; the kernel did not say so)")
    } else {
        said.to_string()
    };
    decide(
        id,
        &said,
        &Running {
            release: &kernel.release,
            build: &kernel.build,
            build_id: kernel.fingerprint.build_id.as_deref(),
            config: kernel.build_config(),
        },
    )
}

/// The answer of a probe outside this module for feature `id`: its `unsupported` (whose reason is
/// what the kernel said) goes through [`missing`], and so does its `Ok` when the fault switch
/// names `id`; `fail` and `error` pass unchanged.
pub fn judge<T>(id: &str, answer: CaseResult<T>) -> CaseResult<T> {
    match answer {
        Ok(_) if faulted(id) => Err(missing(id, "")),
        Err(CaseError::Unsupported { reason: said, .. }) => Err(missing(id, said)),
        other => other,
    }
}

/// A build that lacks a feature past its floor on purpose (`kernels/deviations.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deviation {
    /// The build's GNU build id.
    build_id: String,
    /// The feature id it lacks.
    feature: String,
    /// Why, and how it was shown.
    reason: String,
}

fn deviations() -> &'static [Deviation] {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        deviation: Vec<Deviation>,
    }
    static DEVIATIONS: LazyLock<Vec<Deviation>> = LazyLock::new(|| {
        toml::from_str::<File>(include_str!("../../../kernels/deviations.toml"))
            .unwrap_or_else(|e| panic!("kernels/deviations.toml: {e}"))
            .deviation
    });
    &DEVIATIONS
}

/// The kernel a decision is about.
struct Running<'a> {
    release: &'a str,
    /// `uname -v`.
    build: &'a str,
    /// The GNU build id.
    build_id: Option<&'a str>,
    config: &'a kernel::Config,
}

fn decide(id: &str, said: &str, kernel: &Running) -> CaseError {
    let cause = Cause {
        feature: id.to_owned(),
        said: said.to_owned(),
    };
    match decide_outcome(id, said, kernel, deviations()) {
        CaseError::Unsupported { reason, .. } => CaseError::Unsupported {
            reason,
            cause: Some(cause),
        },
        CaseError::Fail(e) => CaseError::Fail(anyhow::Error::new(Regression {
            text: format!("{e:#}"),
            cause,
        })),
        error => error,
    }
}

fn decide_outcome(id: &str, said: &str, kernel: &Running, deviations: &[Deviation]) -> CaseError {
    let what = describe(id);
    let Some(floor) = floor(id) else {
        return CaseError::Error(anyhow::anyhow!(
            "{said}; and kernels/floors.toml has no row for {id}, so the harness cannot tell \
             a missing feature from a regression: add it"
        ));
    };
    if let Some(reason) = &floor.reason {
        return CaseError::unsupported(format!(
            "{said} ({reason}; the machine, not the kernel: platform.{})",
            id.split_once('.').map_or(id, |(_, k)| k)
        ));
    }
    let Some(since) = floor.since.as_deref().and_then(Version::parse) else {
        return CaseError::Error(anyhow::anyhow!(
            "{said}; and the floor of {id} has no release (kernels/floors.toml)"
        ));
    };
    let Some(version) = Version::of_kernel(kernel.release, kernel.build) else {
        return CaseError::Error(anyhow::anyhow!(
            "{said}; and the release of this kernel ({}) cannot be read, so the floor of {what} \
             (Linux {since}) cannot be checked",
            kernel.release
        ));
    };
    if let Some(removed) = removal(floor, version) {
        return CaseError::unsupported(format!(
            "{said}: {what} was removed in {removed} ({})",
            floor.removed_by.as_deref().unwrap_or("kernels/floors.toml")
        ));
    }
    let config = floor.config_at(version);
    let needs = if config.is_empty() {
        String::new()
    } else {
        format!(" / {}", config.join(", "))
    };
    if !version.at_least(since) && !backported(floor, version) {
        return CaseError::unsupported(format!(
            "{said}: {what} needs Linux {since}+{needs}; this is {} ({})",
            kernel.release, floor.source
        ));
    }
    let Some(options) = &kernel.config.options else {
        return CaseError::Error(anyhow::anyhow!(
            "{said}: {what} is in Linux {since}+ with {}, but this kernel's config cannot be read \
             (looked in {}), so the harness cannot tell a missing option from a regression; set \
             ${} to the kernel's config file",
            config.join(", "),
            kernel.config.searched.join(", "),
            kernel::KCONFIG_ENV,
        ));
    };
    let from = kernel.config.source.as_deref().unwrap_or("the config");
    let off: Vec<String> = config
        .iter()
        .filter_map(|need| option_off(options, need))
        .collect();
    if !off.is_empty() {
        // An option probed by name: what the kernel said is the config itself.
        if id.starts_with("kconfig.") {
            return CaseError::unsupported(said);
        }
        return CaseError::unsupported(format!(
            "{said}: {what} needs {}; here {} (config from {from})",
            config.join(", "),
            off.join(", ")
        ));
    }
    if let Some(d) = deviations
        .iter()
        .find(|d| d.feature == id && Some(d.build_id.as_str()) == kernel.build_id)
    {
        return CaseError::unsupported(format!(
            "{said}: {what} is in Linux {since}+, and this build ({}, build id {}) lacks it: {} \
             (kernels/deviations.toml)",
            kernel.release,
            &d.build_id[..d.build_id.len().min(12)],
            d.reason
        ));
    }
    CaseError::Fail(anyhow::anyhow!(
        "regression: {what} is in Linux {since}+{} and this kernel ({}) has {}, but {said} ({})",
        if config.is_empty() {
            ""
        } else {
            " with its options"
        },
        kernel.release,
        if config.is_empty() {
            "no option to turn it off".to_owned()
        } else {
            format!("{} set ({from})", config.join(", "))
        },
        floor.source
    ))
}

/// `need` (`CONFIG_X` or `CONFIG_X=y`) against the config: `None` when met, else how it is off.
fn option_off(options: &HashMap<String, String>, need: &str) -> Option<String> {
    let (option, builtin) = match need.strip_suffix("=y") {
        Some(option) => (option, true),
        None => (need, false),
    };
    match options.get(option).map(String::as_str) {
        Some("y") => None,
        Some("m") if !builtin => None,
        Some(value) => Some(format!("{option}={value}")),
        None => Some(format!("{option} is not set")),
    }
}

/// Whether a stable release of `version`'s series at or before it got the feature (an unknown
/// patch level does not count: the release alone cannot show it).
fn backported(floor: &Floor, version: Version) -> bool {
    floor
        .backported
        .iter()
        .filter_map(|s| Version::parse(s))
        .any(|stable| {
            (stable.major, stable.minor) == (version.major, version.minor)
                && version.patch.is_some()
                && version.at_least(stable)
        })
}

/// Where `floor` says the feature left a kernel of `version`, if it did.
fn removal(floor: &Floor, version: Version) -> Option<String> {
    if let Some(removed) = floor.removed.as_deref().and_then(Version::parse)
        && version.at_least(removed)
    {
        return Some(format!("Linux {removed}"));
    }
    floor
        .removed_stable
        .iter()
        .filter_map(|s| Version::parse(s))
        .find(|s| (s.major, s.minor) == (version.major, version.minor))
        .and_then(|stable| match version.patch {
            Some(_) if version.at_least(stable) => Some(format!("stable {stable}")),
            Some(_) => None,
            // A Debian release without its upstream version: it may be past the backport.
            None => Some(format!(
                "stable {stable} (this kernel's patch level is unknown, so it may be past it)"
            )),
        })
}

/// A readable name for a feature id.
fn describe(id: &str) -> String {
    let (kind, key) = id.split_once('.').unwrap_or(("", id));
    match kind {
        "prog_type" => format!("program type {key}"),
        "attach_type" => format!("attach type {key}"),
        "helper" => format!("helper {key}"),
        "kfunc" => format!("kfunc {key}"),
        "map_type" => format!("map type {key}"),
        "map_flag" => format!("map flag {key}"),
        "map_op" => format!("map operation {key}"),
        "test_run" => format!("BPF_PROG_TEST_RUN of {key}"),
        "isa" => format!("instruction set {key} (-mcpu={key})"),
        "insn" => format!("instruction {key} (RFC 9669 conformance)"),
        "tracepoint" => format!("tracepoint {key}"),
        "verifier" => format!("verifier feature {key}"),
        "fs" => format!("filesystem {key}"),
        "kconfig" => key.to_owned(),
        _ => id.to_owned(),
    }
}

#[cfg(test)]
mod tests;
