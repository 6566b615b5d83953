//! The suite needs root's BPF, admin and network capabilities; without them it stops once, clearly.

use std::io::Write;
use std::sync::Once;

use caps::{CapSet, Capability};

/// Exits the process with one message naming the missing capabilities, instead of a panic per test.
pub fn require() {
    static CHECK: Once = Once::new();
    CHECK.call_once(|| {
        let missing = missing();
        if !missing.is_empty() {
            // Straight to fd 2: libtest captures eprintln! output and would drop it on exit.
            let _ = writeln!(
                std::io::stderr(),
                "\nbpfconf: this suite loads BPF programs and builds network namespaces and cgroups: it \
                 needs {} in its effective capability set, which this process lacks.\n\
                 Run it as root, e.g. `sudo -E cargo test`.\n",
                missing.join(" and ")
            );
            std::process::exit(77);
        }
    });
}

/// CAP_SYS_ADMIN (netns, cgroups, mounts; it also grants what CAP_BPF and CAP_PERFMON grant) and
/// CAP_NET_ADMIN (interfaces, qdiscs, routes).
fn missing() -> Vec<&'static str> {
    let effective = caps::read(None, CapSet::Effective).unwrap_or_default();
    let mut missing = Vec::new();
    if !effective.contains(&Capability::CAP_SYS_ADMIN) {
        missing.push("CAP_SYS_ADMIN (CAP_BPF alone cannot build the test topologies)");
    }
    if !effective.contains(&Capability::CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}
