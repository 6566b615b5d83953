//! `BPF_MAP_TYPE_BLOOM_FILTER` (`programs/src/bpf/map_bloom_filter.bpf.c`): a set that may answer
//! "maybe" for a value never added but never "no" for one that was. User space adds half the
//! values (a keyless update), the program the other half (`bpf_map_push_elem`, run with
//! `BPF_PROG_TEST_RUN`); every value added is then found from both sides (a user-space lookup and
//! the program's `bpf_map_peek_elem`), and an empty filter finds nothing (no bit is set). False
//! positives are possible by design, so nothing is asserted about values never added once some
//! are. What a bloom filter cannot do answers with its errno: a push with flags other than
//! `BPF_ANY` `EINVAL` (both sides), delete and `BPF_MAP_GET_NEXT_KEY` `EOPNOTSUPP`,
//! lookup-and-delete `ENOTSUPP` (524).

use std::mem::MaybeUninit;

use libbpf_rs::libbpf_sys::BPF_EXIST;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramMut, ProgramType};
use programs::map_bloom_filter::MapBloomFilterSkelBuilder;
use testkit::map_ops::{self, OK, found, outcome, u64b};
use testkit::{Case, CaseResult, probe, test_run};

/// The values the test adds: odd ones from user space, even ones from the program.
const VALUES: std::ops::RangeInclusive<u64> = 1..=32;

/// A program's answer for `value` (`add` also takes `flags`), by name.
fn program(prog: &ProgramMut<'_>, value: u64, flags: u32) -> CaseResult<String> {
    let ret = test_run::raw_tp(prog, &[value, flags.into()], None)?;
    Ok(map_ops::answer(ret))
}

#[test]
fn no_false_negatives() {
    Case::run(ProgramType::RawTracepoint, |case| {
        probe::map_type(MapType::BloomFilter, "map_type.bloom_filter")?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapBloomFilterSkelBuilder::default().open(&mut object)?)?;
        let (map, add, check) = (&skel.maps.seen, &skel.progs.add, &skel.progs.check);
        // Both sides' answer for every value: (user space, program).
        let lookups = || -> CaseResult<Vec<(bool, String)>> {
            VALUES
                .map(|v| Ok((map.lookup_bloom_filter(&u64b(v))?, program(check, v, 0)?)))
                .collect()
        };
        let empty = lookups()?;
        assert!(
            empty.iter().all(|(user, prog)| !user && prog == "ENOENT"),
            "an empty filter holds nothing: {empty:?}"
        );

        for v in VALUES {
            let added = if v % 2 == 1 {
                outcome(&map.update(&[], &u64b(v), MapFlags::ANY))
            } else {
                program(add, v, 0)?
            };
            assert_eq!(added, OK, "adding {v}");
        }
        let full = lookups()?;
        case.detail("lookups", &full);
        let misses: Vec<u64> = VALUES
            .zip(&full)
            .filter(|(_, (user, prog))| !user || prog != OK)
            .map(|(v, _)| v)
            .collect();
        assert!(
            misses.is_empty(),
            "values added but not found (false negatives): {misses:?}"
        );

        let unsupported = [
            outcome(&map.update(&[], &u64b(99), MapFlags::EXIST)),
            program(add, 99, BPF_EXIST)?,
            map_ops::delete_keyless(map),
            map_ops::next_key(map, None)
                .map(|_| OK.to_owned())
                .unwrap_or_else(|e| e),
            found(&map.lookup_and_delete(&[])),
        ];
        assert_eq!(
            unsupported,
            ["EINVAL", "EINVAL", "EOPNOTSUPP", "EOPNOTSUPP", "ENOTSUPP"],
            "add with BPF_EXIST (user, program), delete, next key, lookup-and-delete"
        );
        Ok(())
    });
}
