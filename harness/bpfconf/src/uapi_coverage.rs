//! Every map type and attach type of the newest pinned kernel's UAPI has a sample. The lists are
//! that kernel's own `enum bpf_map_type` and `enum bpf_attach_type`, read from the BTF of its
//! cached image, never lists kept here: pinning a newer kernel that adds one fails these tests
//! until a module covers it.

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::ffi::{CStr, CString};
    use std::fs;
    use std::path::Path;

    use libbpf_rs::btf::Btf;
    use libbpf_rs::btf::types::Enum;
    use libbpf_rs::libbpf_sys;

    use crate::kernels::{self, KernelList, Kind};
    use crate::paths::workspace_root;
    use crate::run::kernel_order;

    /// The text of every file under `dir` whose name ends in one of `suffixes`.
    fn sources(dir: &Path, suffixes: &[&str], out: &mut String) {
        for entry in fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, suffixes, out);
            } else if suffixes.iter().any(|s| path.to_string_lossy().ends_with(s)) {
                out.push_str(&fs::read_to_string(&path).unwrap());
            }
        }
    }

    /// The newest pinned Debian kernel's id and the enumerators of `enum name` in its BTF.
    fn uapi_enum(name: &str) -> (String, Vec<String>) {
        let list = KernelList::load().unwrap();
        let newest = (list.kernel.iter())
            .filter(|k| k.kind == Kind::Debian)
            .max_by_key(|k| kernel_order(&k.id))
            .unwrap();
        let image = kernels::kernel_dir(&newest.id).join("vmlinuz");
        let btf = Btf::from_path(&image).unwrap_or_else(|e| {
            panic!(
                "reading the BTF of {} ({e}): run `bpfconf kernels fetch {}`",
                image.display(),
                newest.id
            )
        });
        let values: Enum<'_> = btf.type_by_name(name).unwrap();
        let names = (values.iter())
            .filter_map(|m| Some(m.name?.to_str()?.to_owned()))
            .filter(|n| !n.starts_with("__MAX_"))
            .collect();
        (newest.id.clone(), names)
    }

    /// Whether `text` holds `token` as a whole identifier.
    fn has_token(text: &str, token: &str) -> bool {
        text.match_indices(token).any(|(at, _)| {
            let next = text[at + token.len()..].chars().next();
            !next.is_some_and(|c| c == '_' || c.is_ascii_alphanumeric())
        })
    }

    /// The samples' sources (programs/src/bpf) and the tests' and their library's (where links of
    /// an explicit attach type are made).
    fn samples_and_tests() -> (String, String) {
        let root = workspace_root();
        let (mut samples, mut tests) = (String::new(), String::new());
        sources(
            &root.join("programs/src/bpf"),
            &[".bpf.c", ".h"],
            &mut samples,
        );
        sources(&root.join("tests/suite"), &[".rs"], &mut tests);
        sources(&root.join("harness/testkit/src"), &[".rs"], &mut tests);
        (samples, tests)
    }

    #[test]
    #[ignore = "reads the newest pinned kernel's image: run after `bpfconf kernels fetch` (ci/test does)"]
    fn every_map_type_of_the_newest_pinned_kernel_has_a_sample_and_a_floor() {
        let (newest, values) = uapi_enum("bpf_map_type");
        let names: Vec<&str> = (values.iter())
            .filter_map(|v| v.strip_prefix("BPF_MAP_TYPE_"))
            .filter(|n| *n != "UNSPEC" && !n.ends_with("_DEPRECATED"))
            .collect();
        assert!(names.len() >= 33, "{} map types on {newest}", names.len());
        let floors: toml::Table = toml::from_str(
            &fs::read_to_string(workspace_root().join("kernels/floors.toml")).unwrap(),
        )
        .unwrap();
        let rows = floors["map_type"].as_table().unwrap();
        let (samples, tests) = samples_and_tests();
        let text = samples + &tests;
        let used = |name: &str| {
            has_token(&text, &format!("BPF_MAP_TYPE_{name}"))
                || (name == "STRUCT_OPS" && text.contains("SEC(\".struct_ops"))
        };
        let missing: Vec<String> = (names.iter())
            .filter_map(|n| match (rows.contains_key(&n.to_lowercase()), used(n)) {
                (true, true) => None,
                (row, sample) => Some(format!("{n} (floor row: {row}, sample: {sample})")),
            })
            .collect();
        assert!(
            missing.is_empty(),
            "map types of {newest} without a floor row in kernels/floors.toml [map_type] or a \
             sample (programs/src/bpf, tests/suite): {missing:?}"
        );
    }

    /// The attach type libbpf gives a program of section `sec` (what the samples' objects carry).
    fn attach_type_of_section(sec: &str) -> Option<String> {
        let sec = CString::new(sec).ok()?;
        let (mut prog_type, mut attach_type) = (0, 0);
        // SAFETY: a NUL-terminated string and two out-parameters that outlive the call.
        let found = unsafe {
            libbpf_sys::libbpf_prog_type_by_name(sec.as_ptr(), &mut prog_type, &mut attach_type)
        };
        (found == 0).then_some(())?;
        // SAFETY: libbpf returns a static string or NULL.
        let name = unsafe { libbpf_sys::libbpf_bpf_attach_type_str(attach_type) };
        // SAFETY: checked for NULL; static and NUL-terminated.
        (!name.is_null()).then(|| {
            unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned()
        })
    }

    #[test]
    #[ignore = "reads the newest pinned kernel's image: run after `bpfconf kernels fetch` (ci/test does)"]
    fn every_attach_type_of_the_newest_pinned_kernel_has_a_case() {
        let (newest, values) = uapi_enum("bpf_attach_type");
        assert!(
            values.len() >= 60,
            "{} attach types on {newest}",
            values.len()
        );
        let (samples, tests) = samples_and_tests();
        let by_section: BTreeSet<String> = (samples.match_indices("SEC(\""))
            .filter_map(|(at, _)| {
                let rest = &samples[at + 5..];
                attach_type_of_section(&rest[..rest.find('"')?])
            })
            .collect();
        let missing: Vec<&String> = (values.iter())
            .filter(|v| {
                let libbpf_name = v.trim_start_matches("BPF_").to_lowercase();
                !by_section.contains(&libbpf_name) && !has_token(&tests, v)
            })
            .collect();
        assert!(
            missing.is_empty(),
            "attach types of {newest} that no sample's section (libbpf's attach type of it) and no \
             test (its UAPI name, for links made with an explicit attach type) uses: {missing:?}"
        );
    }
}
