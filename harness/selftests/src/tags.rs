//! The test annotations of one program: the BTF decl tags `comment:…` that `bpf_misc.h`'s macros
//! (`__success`, `__msg(…)`, …) attach to the program's FUNC, in source order.
//!
//! Two encodings exist. Up to 6.12 a tag is `comment:<tag>`, and tags that may repeat carry a
//! counter after their key (`comment:test_expect_msg=7=<text>`); the tree's loader takes them in
//! BTF order. From 6.13 every tag is `comment:<counter>:<tag>` and the loader sorts them by the
//! counter (the compiler does not keep their order). Both come out here as `<tag>` in order.

use std::collections::BTreeMap;

use libbpf_rs::btf::types::{DeclTag, Func};
use libbpf_rs::btf::{Btf, ReferencesType, TypeId};

/// Keys whose values carried a `__COUNTER__` before the tag format changed.
const COUNTED: &[&str] = &[
    "test_expect_msg=",
    "test_expect_msg_unpriv=",
    "test_expect_xlated=",
    "test_expect_xlated_unpriv=",
    "test_jited=",
    "test_jited_unpriv=",
];

/// The annotations of every FUNC in `btf` that has any, by FUNC name, normalised to `<tag>`s in
/// source order.
pub fn of_object(btf: &Btf<'_>) -> BTreeMap<String, Vec<String>> {
    let mut by_id: BTreeMap<TypeId, Vec<String>> = BTreeMap::new();
    for tag in btf.type_by_kind::<DeclTag<'_>>() {
        if tag.component_index().is_none()
            && let Some(name) = tag.name()
        {
            let name = name.to_string_lossy().into_owned();
            by_id
                .entry(tag.referenced_type_id())
                .or_default()
                .push(name);
        }
    }
    btf.type_by_kind::<Func<'_>>()
        .filter_map(|f| {
            let raw = by_id.remove(&f.type_id())?;
            Some((f.name()?.to_string_lossy().into_owned(), normalise(raw)))
        })
        .collect()
}

/// Whether `btf` has a FUNC named `name` (the tree's loader fails a program without one).
pub fn has_func(btf: &Btf<'_>, name: &str) -> bool {
    btf.type_by_kind::<Func<'_>>()
        .any(|f| f.name().is_some_and(|n| n == name))
}

/// `comment:…` tags (in BTF order) → `<tag>`s in source order; other tags are dropped.
pub fn normalise(raw: Vec<String>) -> Vec<String> {
    let mut counted: Vec<(u64, String)> = Vec::new();
    let mut plain = Vec::new();
    for tag in raw {
        let Some(rest) = tag.strip_prefix("comment:") else {
            continue;
        };
        match counter(rest) {
            Some((n, tag)) => counted.push((n, tag.to_owned())),
            None => plain.push(strip_counted_key(rest)),
        }
    }
    // strverscmp on "comment:<n>:…" orders by <n>, which is unique per tag.
    counted.sort_by_key(|(n, _)| *n);
    plain.extend(counted.into_iter().map(|(_, t)| t));
    plain
}

/// `<n>:<tag>` → (n, tag).
fn counter(rest: &str) -> Option<(u64, &str)> {
    let (n, tag) = rest.split_once(':')?;
    Some((n.parse().ok()?, tag))
}

/// `test_expect_msg=<n>=<text>` → `test_expect_msg=<text>` (the old format's counter).
fn strip_counted_key(tag: &str) -> String {
    for key in COUNTED {
        if let Some(rest) = tag.strip_prefix(key)
            && let Some((_, text)) = rest.split_once('=')
        {
            return format!("{key}{text}");
        }
    }
    tag.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn old_format_keeps_btf_order_and_drops_counters() {
        let raw = v(&[
            "comment:test_description=invalid and",
            "comment:test_expect_failure",
            "comment:test_expect_msg=0=R0 max value is outside",
            "comment:test_expect_msg=12=a=b",
            "comment:test_prog_flags=BPF_F_ANY_ALIGNMENT",
            "other tag",
        ]);
        assert_eq!(
            normalise(raw),
            v(&[
                "test_description=invalid and",
                "test_expect_failure",
                "test_expect_msg=R0 max value is outside",
                "test_expect_msg=a=b",
                "test_prog_flags=BPF_F_ANY_ALIGNMENT",
            ])
        );
    }

    #[test]
    fn new_format_sorts_by_counter() {
        let raw = v(&[
            "comment:12:test_expect_msg=second",
            "comment:3:test_expect_failure",
            "comment:10:test_expect_msg=first: with colon",
        ]);
        assert_eq!(
            normalise(raw),
            v(&[
                "test_expect_failure",
                "test_expect_msg=first: with colon",
                "test_expect_msg=second",
            ])
        );
    }
}
