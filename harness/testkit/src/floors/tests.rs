//! What the floors decide: outcomes and their causes on the matrix kernels, deviations, removals
//! and backports; and ([`sources`]) that every `unsupported` path has a floor.

use super::*;

mod sources;

fn config(options: &[(&str, &str)]) -> kernel::Config {
    kernel::Config {
        options: Some(
            options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        source: Some("/proc/config.gz".into()),
        searched: vec!["/proc/config.gz".into()],
    }
}

fn unreadable() -> kernel::Config {
    kernel::Config {
        options: None,
        source: None,
        searched: vec![
            "/proc/config.gz (No such file or directory (os error 2))".into(),
            "/boot/config-x (No such file or directory (os error 2))".into(),
            "$BPFCONF_KCONFIG (not set)".into(),
        ],
    }
}

/// The outcome and reason of `id` missing on a kernel `release` (`uname -v` `build`).
fn on(release: &str, build: &str, config: &kernel::Config, id: &str) -> (Outcome, String) {
    let e = decide(
        id,
        "the kernel said no",
        &Running {
            release,
            build,
            build_id: None,
            config,
        },
    );
    (e.outcome(), e.reason())
}

#[test]
fn judged_outcomes_carry_their_cause() {
    let kernel = |build_id| Running {
        release: "6.18.44-fc-v1300",
        build: "#1 SMP",
        build_id,
        config: Box::leak(Box::new(config(BPF))),
    };
    let said = "program of this type cannot use helper bpf_xdp_adjust_meta#54";
    let fail = decide("helper.bpf_xdp_adjust_meta", said, &kernel(Some("fa36")));
    assert_eq!(fail.outcome(), Outcome::Fail, "{}", fail.reason());
    let cause = fail.cause().expect("a regression names its feature");
    assert_eq!(
        (cause.feature.as_str(), cause.said.as_str()),
        ("helper.bpf_xdp_adjust_meta", said)
    );
    let old = Running {
        release: "4.9.0",
        ..kernel(None)
    };
    let unsupported = decide("helper.bpf_xdp_adjust_meta", said, &old);
    assert_eq!(unsupported.outcome(), Outcome::Unsupported);
    assert_eq!(
        unsupported.cause().map(|c| c.feature),
        Some("helper.bpf_xdp_adjust_meta".to_owned())
    );
    assert_eq!(CaseError::Fail(anyhow::anyhow!("plain")).cause(), None);
}

/// A deviation names one build: that build's missing feature is `unsupported` with the declared
/// reason; any other build past the floor still fails.
#[test]
fn a_declared_deviation_binds_to_its_build_only() {
    let deviations = [Deviation {
        build_id: "fa36776b59bf96ad".into(),
        feature: "helper.bpf_xdp_adjust_meta".into(),
        reason: "a vendor patch".into(),
    }];
    let config = config(BPF);
    let running = |build_id| Running {
        release: "6.18.44-fc-v1300",
        build: "#1 SMP",
        build_id,
        config: &config,
    };
    let id = "helper.bpf_xdp_adjust_meta";
    let declared = decide_outcome(id, "said", &running(Some("fa36776b59bf96ad")), &deviations);
    assert_eq!(declared.outcome(), Outcome::Unsupported);
    assert!(
        declared.reason().contains(
            "this build (6.18.44-fc-v1300, build id fa36776b59bf) lacks it: a vendor patch"
        ),
        "{}",
        declared.reason()
    );
    for other in [Some("1a2b3c"), None] {
        let e = decide_outcome(id, "said", &running(other), &deviations);
        assert_eq!(e.outcome(), Outcome::Fail, "{other:?}: {}", e.reason());
    }
    let e = decide_outcome(
        "helper.bpf_xdp_adjust_head",
        "said",
        &running(Some("fa36776b59bf96ad")),
        &deviations,
    );
    assert_eq!(e.outcome(), Outcome::Fail, "{}", e.reason());
}

/// Every deviation names a feature with a floor and a whole build id.
#[test]
fn deviations_name_floored_features() {
    for d in deviations() {
        assert!(floor(&d.feature).is_some(), "{}: no floor row", d.feature);
        assert!(
            d.build_id.len() >= 32 && d.build_id.chars().all(|c| c.is_ascii_hexdigit()),
            "{}: build id {:?}",
            d.feature,
            d.build_id
        );
        assert!(!d.reason.is_empty(), "{}", d.feature);
    }
}

use crate::outcome::Outcome;

const BPF: &[(&str, &str)] = &[("CONFIG_BPF_SYSCALL", "y"), ("CONFIG_NET", "y")];

/// The matrix kernels (5.10, 6.1, 6.12, 7.3) against the floors of the newer program types and
/// links: what each must report when the kernel says no.
#[test]
fn newer_types_and_links_follow_their_floors_across_the_matrix() {
    let cfg = config(&[
        ("CONFIG_BPF_SYSCALL", "y"),
        ("CONFIG_NET", "y"),
        ("CONFIG_INET", "y"),
        ("CONFIG_CGROUP_BPF", "y"),
        ("CONFIG_NETFILTER", "y"),
        ("CONFIG_NETFILTER_BPF_LINK", "y"),
        ("CONFIG_NET_XGRESS", "y"),
        ("CONFIG_NETKIT", "y"),
    ]);
    let kernels = [
        "5.10.0-32-amd64",
        "6.1.0-50-amd64",
        "6.12.107+deb13-amd64",
        "7.3.4+deb13-amd64",
    ];
    for (id, unsupported_on) in [
        ("prog_type.cgroup_sysctl", 0),
        ("prog_type.cgroup_sockopt", 0),
        ("prog_type.sk_lookup", 0),
        ("prog_type.netfilter", 2),
        ("attach_type.netfilter_link", 2),
        ("attach_type.tcx", 2),
        ("attach_type.xdp_cpumap", 0),
        ("attach_type.sk_skb_verdict", 1),
        ("attach_type.netkit_primary", 2),
    ] {
        for (i, release) in kernels.iter().enumerate() {
            let (outcome, reason) = on(release, "", &cfg, id);
            let expected = if i < unsupported_on {
                Outcome::Unsupported
            } else {
                Outcome::Fail
            };
            assert_eq!(outcome, expected, "{id} on {release}: {reason}");
        }
    }
}

/// The attach types of issue 24 on the matrix kernels (Debian 5.10, 6.1, 6.12, 6.18, 7.3) with
/// their options on: unsupported below their floor, a regression from it.
#[test]
fn remaining_attach_types_follow_their_floors_across_the_matrix() {
    let cfg = config(&[
        ("CONFIG_BPF_SYSCALL", "y"),
        ("CONFIG_NET", "y"),
        ("CONFIG_INET", "y"),
        ("CONFIG_IPV6", "y"),
        ("CONFIG_CGROUP_BPF", "y"),
        ("CONFIG_BPF_LSM", "y"),
        ("CONFIG_BPF_JIT", "y"),
        ("CONFIG_BPF_EVENTS", "y"),
        ("CONFIG_DEBUG_INFO_BTF", "y"),
        ("CONFIG_NETKIT", "y"),
        ("CONFIG_FPROBE", "y"),
        ("CONFIG_UPROBES", "y"),
        ("CONFIG_PERF_EVENTS", "y"),
        ("CONFIG_FUNCTION_TRACER", "y"),
        ("CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS", "y"),
        ("CONFIG_HAVE_SINGLE_FTRACE_DIRECT_OPS", "y"),
    ]);
    let kernels = [
        "5.10.0-32-amd64",
        "6.1.0-50-amd64",
        "6.12.107+deb13-amd64",
        "6.18.15+deb13-amd64",
        "7.3.4+deb13-amd64",
    ];
    for (id, unsupported_on) in [
        ("attach_type.cgroup_inet6_bind", 0),
        ("attach_type.cgroup_inet4_post_bind", 0),
        ("attach_type.cgroup_inet6_post_bind", 0),
        ("attach_type.cgroup_inet_sock_release", 0),
        ("attach_type.xdp_devmap", 0),
        ("attach_type.xdp_link", 0),
        ("attach_type.sk_reuseport_migrate", 1),
        ("attach_type.perf_event_link", 1),
        ("attach_type.lsm_cgroup", 1),
        ("attach_type.struct_ops_link", 2),
        ("attach_type.netkit_peer", 2),
        ("attach_type.kprobe_session", 2),
        ("attach_type.uprobe_session", 3),
        ("attach_type.fsession", 4),
        ("attach_type.fentry_multi", 4),
        ("attach_type.fexit_multi", 4),
        ("attach_type.fsession_multi", 4),
    ] {
        for (i, release) in kernels.iter().enumerate() {
            let (outcome, reason) = on(release, "", &cfg, id);
            let expected = if i < unsupported_on {
                Outcome::Unsupported
            } else {
                Outcome::Fail
            };
            assert_eq!(outcome, expected, "{id} on {release}: {reason}");
        }
    }
    // 7.1 predates the tracing_multi links, 7.0 has fsession.
    assert_eq!(
        on("7.1.2+deb13-amd64", "", &cfg, "attach_type.fentry_multi").0,
        Outcome::Unsupported
    );
    assert_eq!(
        on("7.0.13+deb13-amd64", "", &cfg, "attach_type.fsession").0,
        Outcome::Fail
    );
}

/// The BTF-era program types, attach types and helpers on the matrix kernels (5.10, 6.1, 6.12,
/// 7.3) with their options on: unsupported below their floor, a regression from it; and the
/// options that Debian's 6.1 (no CONFIG_FPROBE) and the host lack.
#[test]
fn btf_era_features_follow_their_floors_across_the_matrix() {
    let all = [
        ("CONFIG_BPF_SYSCALL", "y"),
        ("CONFIG_BPF_EVENTS", "y"),
        ("CONFIG_BPF_JIT", "y"),
        ("CONFIG_DEBUG_INFO_BTF", "y"),
        ("CONFIG_FUNCTION_TRACER", "y"),
        ("CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS", "y"),
        ("CONFIG_UPROBE_EVENTS", "y"),
        ("CONFIG_FPROBE", "y"),
    ];
    let cfg = config(&all);
    let kernels = [
        "5.10.0-32-amd64",
        "6.1.0-50-amd64",
        "6.12.107+deb13-amd64",
        "7.3.4+deb13-amd64",
    ];
    for (id, unsupported_on) in [
        ("prog_type.tracing", 0),
        ("prog_type.syscall", 1),
        ("attach_type.fentry", 0),
        ("attach_type.tp_btf", 0),
        ("attach_type.iter_task", 0),
        ("attach_type.iter_bpf_map_elem", 0),
        ("attach_type.uprobe", 0),
        ("attach_type.kprobe_multi", 1),
        ("helper.bpf_get_attach_cookie", 1),
        ("test_run.syscall", 1),
    ] {
        for (i, release) in kernels.iter().enumerate() {
            let (outcome, reason) = on(release, "", &cfg, id);
            let expected = if i < unsupported_on {
                Outcome::Unsupported
            } else {
                Outcome::Fail
            };
            assert_eq!(outcome, expected, "{id} on {release}: {reason}");
        }
    }
    let no_fprobe = config(&all[..7]);
    let (outcome, reason) = on("6.1.0-50-amd64", "", &no_fprobe, "attach_type.kprobe_multi");
    assert_eq!(outcome, Outcome::Unsupported, "{reason}");
    assert!(reason.contains("CONFIG_FPROBE is not set"), "{reason}");
    // The host's locked-down kernel: whatever its config, the machine decides.
    let (outcome, reason) = on("6.18.44-fc-v782", "", &cfg, "platform.ftrace_denied");
    assert_eq!(outcome, Outcome::Unsupported, "{reason}");
}

#[test]
fn mcpu_v4_is_unsupported_below_6_6_and_a_regression_from_it() {
    let cfg = config(BPF);
    let (outcome, reason) = on("5.10.0-32-amd64", "", &cfg, "isa.v4");
    assert_eq!(outcome, Outcome::Unsupported, "{reason}");
    assert!(reason.contains("needs Linux 6.6+"), "{reason}");
    assert_eq!(
        on("6.1.0-50-amd64", "", &cfg, "isa.v4").0,
        Outcome::Unsupported
    );

    let (outcome, reason) = on("6.12.107+deb13-amd64", "", &cfg, "isa.v4");
    assert_eq!(outcome, Outcome::Fail, "{reason}");
    assert!(
        reason.starts_with("regression: instruction set v4"),
        "{reason}"
    );
    assert!(
        reason.contains("CONFIG_BPF_SYSCALL set (/proc/config.gz)"),
        "{reason}"
    );
    assert!(reason.contains("but the kernel said no"), "{reason}");
    assert_eq!(on("6.6.0", "", &cfg, "isa.v4").0, Outcome::Fail);
    assert_eq!(on("7.3.4+deb13-amd64", "", &cfg, "isa.v4").0, Outcome::Fail);
}

#[test]
fn an_unreadable_config_past_the_floor_is_an_error_naming_where_it_looked() {
    let (outcome, reason) = on("6.12.107+deb13-amd64", "", &unreadable(), "prog_type.xdp");
    assert_eq!(outcome, Outcome::Error, "{reason}");
    for place in [
        "/proc/config.gz",
        "/boot/config-x",
        "$BPFCONF_KCONFIG (not set)",
    ] {
        assert!(reason.contains(place), "{reason}");
    }
    // Below the floor the release alone decides.
    assert_eq!(
        on("4.4.0-1-amd64", "", &unreadable(), "prog_type.xdp").0,
        Outcome::Unsupported
    );
}

#[test]
fn options_off_are_unsupported_and_modules_count_unless_built_in_is_needed() {
    let (outcome, reason) = on(
        "6.18.44-fc-v782",
        "",
        &config(&[("CONFIG_NET_CLS_BPF", "y")]),
        "attach_type.sched_act_act_bpf",
    );
    assert_eq!(outcome, Outcome::Unsupported, "{reason}");
    assert!(reason.contains("CONFIG_NET_ACT_BPF is not set"), "{reason}");
    assert!(reason.contains("config from /proc/config.gz"), "{reason}");
    // y or m: a module counts.
    let module = config(&[("CONFIG_NET_ACT_BPF", "m")]);
    assert_eq!(
        on(
            "6.1.0-50-amd64",
            "",
            &module,
            "attach_type.sched_act_act_bpf"
        )
        .0,
        Outcome::Fail
    );
    assert_eq!(
        on("6.1.0-50-amd64", "", &module, "kconfig.CONFIG_NET_ACT_BPF").0,
        Outcome::Fail
    );
    // =y: a module does not.
    let kprobes_m = config(&[("CONFIG_KPROBES", "m"), ("CONFIG_KPROBE_EVENTS", "y")]);
    let (outcome, reason) = on("6.1.0-50-amd64", "", &kprobes_m, "attach_type.kprobe");
    assert_eq!(outcome, Outcome::Unsupported, "{reason}");
    assert!(reason.contains("CONFIG_KPROBES=m"), "{reason}");
    // An option probed by name: the probe's words are the reason.
    let (outcome, reason) = on("6.1.0-50-amd64", "", &kprobes_m, "kconfig.CONFIG_KPROBES");
    assert_eq!(
        (outcome, reason.as_str()),
        (Outcome::Unsupported, "the kernel said no")
    );
}

#[test]
fn lwt_seg6local_test_run_follows_its_removal_and_backports() {
    let cfg = config(BPF);
    let id = "test_run.lwt_seg6local";
    let debian = |v: &str| format!("#1 SMP PREEMPT_DYNAMIC Debian {v}-1 (2025-01-01)");
    // Debian 5.10 and 6.1 predate the stable backports: they must run it.
    for (release, upstream) in [
        ("5.10.0-32-amd64", "5.10.223"),
        ("6.1.0-50-amd64", "6.1.176"),
    ] {
        let (outcome, reason) = on(release, &debian(upstream), &cfg, id);
        assert_eq!(outcome, Outcome::Fail, "{release}: {reason}");
    }
    // A 6.1 build past the backport, and one whose patch level is unknown.
    let (outcome, reason) = on("6.1.0-60-amd64", &debian("6.1.190"), &cfg, id);
    assert_eq!(outcome, Outcome::Unsupported, "{reason}");
    assert!(reason.contains("removed in stable 6.1.187"), "{reason}");
    let (outcome, reason) = on("6.1.0-60-amd64", "#1 SMP", &cfg, id);
    assert_eq!(outcome, Outcome::Unsupported, "{reason}");
    assert!(reason.contains("patch level is unknown"), "{reason}");
    // Mainline removed it in 6.11.
    for release in [
        "6.12.107+deb13-amd64",
        "7.3.4+deb13-amd64",
        "6.18.44-fc-v782",
    ] {
        let (outcome, reason) = on(release, "", &cfg, id);
        assert_eq!(outcome, Outcome::Unsupported, "{release}: {reason}");
        assert!(reason.contains("removed in Linux 6.11"), "{reason}");
    }
    assert_eq!(on("4.17.0-1-amd64", "", &cfg, id).0, Outcome::Unsupported);
}

#[test]
fn platform_rows_stay_unsupported_and_unknown_ids_are_errors() {
    for release in ["6.18.44-fc-v782", "5.10.0-32-amd64"] {
        let (outcome, reason) = on(release, "", &unreadable(), "platform.hardware_pmu");
        assert_eq!(outcome, Outcome::Unsupported, "{reason}");
        assert!(reason.contains("the machine, not the kernel"), "{reason}");
    }
    let (outcome, reason) = on("6.18.44-fc-v782", "", &config(BPF), "prog_type.nosuch");
    assert_eq!(outcome, Outcome::Error, "{reason}");
    assert!(reason.contains("no row for prog_type.nosuch"), "{reason}");
}

#[test]
fn the_fault_list_is_comma_separated() {
    assert_eq!(
        fault_list(" prog_type.xdp, test_run.socket_filter ,,"),
        ["prog_type.xdp", "test_run.socket_filter"]
    );
    assert!(fault_list("").is_empty());
}

/// `config_since`: tcp_congestion_ops needs CONFIG_MODULES only from 6.9 on.
#[test]
fn options_needed_from_a_later_release() {
    let floor = floor("struct_ops.tcp_congestion_ops").unwrap();
    let at = |v: &str| floor.config_at(Version::parse(v).unwrap());
    assert!(!at("6.8").contains(&"CONFIG_MODULES=y".to_owned()));
    assert!(at("6.9").contains(&"CONFIG_MODULES=y".to_owned()));
    let options = [
        ("CONFIG_BPF_JIT", "y"),
        ("CONFIG_INET", "y"),
        ("CONFIG_DEBUG_INFO_BTF", "y"),
    ];
    let c = config(&options);
    let (outcome, reason) = on("6.8.0", "", &c, "struct_ops.tcp_congestion_ops");
    assert_eq!(outcome, Outcome::Fail, "{reason}");
    let (outcome, reason) = on("6.12.117", "", &c, "struct_ops.tcp_congestion_ops");
    assert_eq!(outcome, Outcome::Unsupported, "{reason}");
    assert!(reason.contains("CONFIG_MODULES is not set"), "{reason}");
}

#[test]
fn a_backport_moves_the_floor_of_its_stable_series() {
    let cfg = config(BPF);
    let id = "insn.gotol";
    let debian = |v: &str| format!("#1 SMP PREEMPT_DYNAMIC Debian {v}-1 (2025-01-01)");
    // Debian's 6.1.176 is past the 6.1.72 backport: a refusal there is a regression.
    let (outcome, reason) = on("6.1.0-50-amd64", &debian("6.1.176"), &cfg, id);
    assert_eq!(outcome, Outcome::Fail, "{reason}");
    // Before the backport, and where the patch level is unknown, the mainline floor decides.
    for build in [debian("6.1.70"), "#1 SMP".to_owned()] {
        let (outcome, reason) = on("6.1.0-17-amd64", &build, &cfg, id);
        assert_eq!(outcome, Outcome::Unsupported, "{build}: {reason}");
        assert!(reason.contains("needs Linux 6.6+"), "{reason}");
    }
    // Another series gains nothing from it.
    let (outcome, _) = on("5.10.0-32-amd64", &debian("5.10.223"), &cfg, id);
    assert_eq!(outcome, Outcome::Unsupported);
    assert_eq!(on("6.6.0", "", &cfg, id).0, Outcome::Fail);
}
