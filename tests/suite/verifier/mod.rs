//! The verifier catalogue: one rule per thing the verifier enforces, written as data
//! ([`rule::Rule`]): program type and attach type, instructions (`testkit::insn`, so the log does
//! not depend on a compiler), privileged or not, log level, and per kernel range the verdict, the
//! errno, the key line, phrases the log must show in order (and must not show), and the test run's
//! return value. One runner ([`run::run`]) executes every rule as its own test, case id
//! `verifier::<rule>`, and snapshots per kernel the whole log
//! (`tests/snapshots/<kernel>/verifier__<rule>.snap`) and, for accepted rules, the translated
//! instructions (`verifier__<rule>__xlated.snap`). Adding a rule is adding an entry to an area's
//! `rules!` list.
//!
//! Unprivileged rules load from a forked child with uid 65534 and no capabilities; where
//! `kernel.unprivileged_bpf_disabled` is not 0 they are `unsupported`
//! (`platform.unprivileged_bpf_disabled`; inside a VM the runner sets it to 0). Some of them
//! depend on whether the kernel's CPU mitigations are on ([`spectre`]). Rules that need a newer
//! kernel name the feature's floor and how an older kernel refuses them (`needs`): there they
//! are `unsupported` with what the kernel said, in the reason and in the snapshot.
//!
//! A kernel range starts at the first release holding the commit that changed the behaviour or
//! the message, named beside it (id and subject), with the stable releases that took it where a
//! kernel of the matrix is one; a range never follows from what a kernel printed alone. A range
//! whose messages were read from the source but not yet seen on that kernel says so in a
//! comment (`unverified`).

/// Declares rules: each `name: Rule { … };` becomes the test `name` running case
/// `verifier::name`.
macro_rules! rules {
    ($($(#[doc = $doc:literal])* $name:ident: $rule:expr;)+) => {
        $(
            $(#[doc = $doc])*
            #[test]
            fn $name() {
                const THIS: $crate::verifier::rule::Rule = $rule;
                $crate::verifier::run::run(stringify!($name), &THIS);
            }
        )+
        /// The rules of this area.
        pub const NAMES: &[&str] = &[$(stringify!($name)),+];
    };
}

mod rule;
mod run;
mod spectre;

mod alu;
mod calls;
mod cfg;
mod ctx;
mod helpers;
mod loops;
mod maps;
mod packet;
mod refs;
mod regs;
mod stack;

// Case ids and snapshot names are the rule's name alone: no two areas may share one (checked
// when the suite compiles).
const _: () = assert!(
    unique(&[
        alu::NAMES,
        calls::NAMES,
        cfg::NAMES,
        ctx::NAMES,
        helpers::NAMES,
        loops::NAMES,
        maps::NAMES,
        packet::NAMES,
        refs::NAMES,
        regs::NAMES,
        stack::NAMES,
    ]),
    "two areas declare a rule of the same name"
);

const fn unique(areas: &[&[&str]]) -> bool {
    let mut a = 0;
    while a < areas.len() {
        let mut i = 0;
        while i < areas[a].len() {
            let mut b = a;
            while b < areas.len() {
                let mut j = if b == a { i + 1 } else { 0 };
                while j < areas[b].len() {
                    if same(areas[a][i], areas[b][j]) {
                        return false;
                    }
                    j += 1;
                }
                b += 1;
            }
            i += 1;
        }
        a += 1;
    }
    true
}

const fn same(x: &str, y: &str) -> bool {
    let (x, y) = (x.as_bytes(), y.as_bytes());
    if x.len() != y.len() {
        return false;
    }
    let mut i = 0;
    while i < x.len() {
        if x[i] != y[i] {
            return false;
        }
        i += 1;
    }
    true
}
