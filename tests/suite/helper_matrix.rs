//! The helper/kfunc matrix (`harness::features`, printed by `bpfconf probe --json`) against the
//! floors: for every `helper.*` and `kfunc.*` row of `kernels/floors.toml`, whether the running
//! kernel has it — a helper when any probeable program type may call it (libbpf's helper probe), a
//! kfunc when any may call it (the probe loads of `bpf_features::kfunc`). A feature present below
//! its floor is a `fail`, and so is one missing at or past it with its options on
//! (`floors::missing`'s judgement); missing below it is fine. Where the kernel's BTF tags its
//! kfuncs (6.11+), the probe loads must agree with the tags. The per-row table goes to the
//! record's details (`matrix`), for `bpfconf report --helpers`.

use std::collections::BTreeMap;

use harness::features::{self, Features};
use harness::{Case, CaseError, floors};
use serde_json::json;

/// One row's verdict on this kernel.
enum Verdict {
    Present,
    Missing(String),
    Fail(String),
    Error(String),
}

/// Judges feature `id`, observed `present` (by `how`), against its floor.
fn judge(id: &str, present: bool, how: &str) -> Verdict {
    if floors::has(id, present) {
        if floors::reached(id) {
            return Verdict::Present;
        }
        return Verdict::Fail(format!(
            "{id} is present ({how}) but the kernel is below its floor (Linux {}+)",
            floors::since(id).unwrap_or("?")
        ));
    }
    match floors::missing(id, format!("{id} is missing ({how})")) {
        CaseError::Unsupported { reason, .. } => Verdict::Missing(reason),
        CaseError::Fail(e) => Verdict::Fail(format!("{e:#}")),
        CaseError::Error(e) => Verdict::Error(format!("{e:#}")),
    }
}

#[test]
fn helpers_and_kfuncs_match_their_floors() {
    Case::run_named("all", |case| {
        // Only the helpers the floors have rows for: a fraction of the loads of a full probe.
        let mut helper_ids = Vec::new();
        for id in floors::table().keys() {
            if let Some(name) = id.strip_prefix("helper.") {
                helper_ids.push(features::helper_id(name).ok_or_else(|| {
                    CaseError::Error(anyhow::anyhow!(
                        "kernels/floors.toml: {id} is no helper of the UAPI header libbpf-sys ships"
                    ))
                })?);
            }
        }
        let features = Features::probe_helpers(&helper_ids);
        let mut matrix = BTreeMap::new();
        let (mut fails, mut errors) = (Vec::new(), Vec::new());
        for (id, floor) in floors::table() {
            let (present, callers, how) = if let Some(name) = id.strip_prefix("helper.") {
                let callers: Vec<&String> = features
                    .helpers
                    .iter()
                    .filter(|(_, helpers)| helpers.iter().any(|h| h == name))
                    .map(|(ty, _)| ty)
                    .collect();
                (!callers.is_empty(), callers, "libbpf_probe_bpf_helper")
            } else if let Some(name) = id.strip_prefix("kfunc.") {
                // The interpreter cannot call kfuncs: no probe load can show one.
                if !harness::jit::enabled() {
                    matrix.insert(
                        id.clone(),
                        json!({
                            "since": floor.since,
                            "verdict": "not probed",
                            "reason": "the JIT is off: the interpreter calls no kfunc",
                        }),
                    );
                    continue;
                }
                let callers: Vec<&String> = features
                    .kfuncs
                    .probed
                    .get(name)
                    .into_iter()
                    .flatten()
                    .collect();
                (
                    !callers.is_empty(),
                    callers,
                    "a kfunc call probe-loaded per program type",
                )
            } else {
                continue;
            };
            // Where the BTF lists its kfuncs, the probe loads must agree with the list.
            if let (Some(name), Some(tagged)) = (id.strip_prefix("kfunc."), &features.kfuncs.tagged)
                && tagged.iter().any(|t| t == name) != present
            {
                fails.push(format!(
                    "{id}: the probe loads say {}, the BTF's bpf_kfunc tags say {}",
                    if present { "callable" } else { "not callable" },
                    if present { "not a kfunc" } else { "a kfunc" },
                ));
            }
            let verdict = judge(id, present, how);
            let (outcome, reason) = match &verdict {
                Verdict::Present => ("present", None),
                Verdict::Missing(r) => ("missing", Some(r.clone())),
                Verdict::Fail(r) => ("fail", Some(r.clone())),
                Verdict::Error(r) => ("error", Some(r.clone())),
            };
            match verdict {
                Verdict::Fail(r) => fails.push(r),
                Verdict::Error(r) => errors.push(r),
                Verdict::Present | Verdict::Missing(_) => {}
            }
            matrix.insert(
                id.clone(),
                json!({
                    "since": floor.since,
                    "config": floor.config,
                    "present": present,
                    "program_types": callers.len(),
                    "verdict": outcome,
                    "reason": reason,
                }),
            );
        }
        case.detail("release", &features.release);
        case.detail(
            "kfunc_method",
            if features.kfuncs.tagged.is_some() {
                "probe loads; the BTF also tags its kfuncs (DECL_TAG bpf_kfunc)"
            } else {
                "probe loads; the BTF tags no kfuncs"
            },
        );
        case.detail(
            "kfuncs_tagged",
            features.kfuncs.tagged.as_ref().map(Vec::len),
        );
        case.detail("matrix", &matrix);
        assert!(
            matrix.keys().any(|id| id.starts_with("helper."))
                && matrix.keys().any(|id| id.starts_with("kfunc.")),
            "the floors file has helper and kfunc rows"
        );
        if !fails.is_empty() {
            return Err(CaseError::Fail(anyhow::anyhow!("{}", fails.join("; "))));
        }
        if !errors.is_empty() {
            return Err(CaseError::Error(anyhow::anyhow!("{}", errors.join("; "))));
        }
        Ok(())
    });
}
