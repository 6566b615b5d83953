//! The checks the hash map modules (`tests/suite/map_hash.rs`, `map_rhash.rs`) share: a map of
//! [`MAX_ENTRIES`] `u32` keys and `u64` values, a program counting events per key in it and a
//! program carrying out its operations ([`Op`]), each run with `BPF_PROG_TEST_RUN`; the test makes
//! the same calls from user space and compares. Only how a module runs its programs differs.

use std::collections::BTreeMap;

use libbpf_rs::libbpf_sys::{BPF_ANY, BPF_EXIST, BPF_NOEXIST};
use libbpf_rs::{MapCore, MapFlags};

use crate::map_ops::{self, OK, Op, as_u32, as_u64, next_key, outcome, u32b, u64b};
use crate::{Case, CaseResult, floors};

/// The maps' `max_entries`, as in their programs.
pub const MAX_ENTRIES: u32 = 8;

/// The update-flag table of a hash map (an LRU hash's too): (key, flags) from an empty map, and
/// the answer each must get.
pub const UPDATES: [(u32, u32, &str); 7] = [
    (1, BPF_NOEXIST, OK),
    (1, BPF_NOEXIST, "EEXIST"),
    (2, BPF_EXIST, "ENOENT"),
    (1, BPF_EXIST, OK),
    (1, BPF_ANY, OK),
    (2, BPF_ANY, OK),
    (3, BPF_NOEXIST | BPF_EXIST, "EINVAL"),
];

/// The program side uses keys of its own, this far from the user side's.
const PROGRAM_KEYS: u32 = 100;

/// A hash map and its programs, each run answering the helper's result by name
/// ([`map_ops::answer`]).
pub struct Table<'a, M> {
    pub map: &'a M,
    /// Carries out `op` on `key`; an update stores `value` with `flags`.
    pub op: Box<dyn Fn(Op, u32, u64, u64) -> CaseResult<String> + 'a>,
    /// Counts one event for `key`.
    pub count: Box<dyn Fn(u32) -> CaseResult<String> + 'a>,
    /// The value the last lookup of `op` found.
    pub looked_up: Box<dyn Fn() -> u64 + 'a>,
}

impl<M: MapCore> Table<'_, M> {
    fn update(&self, key: u32, value: u64, flags: u32) -> String {
        outcome(&self.map.update(
            &u32b(key),
            &u64b(value),
            MapFlags::from_bits_retain(flags.into()),
        ))
    }

    /// The `updates` case on an empty map: the update flags' answers on both sides, each side
    /// reading what the other wrote, the program's counter, a full map refusing a new key with
    /// `E2BIG` on both sides while its keys stay updatable, deletes making room again, and
    /// `BPF_MAP_GET_NEXT_KEY`. Returns the keys it leaves, sorted.
    pub fn updates(&self, case: &mut Case) -> CaseResult<Vec<u32>> {
        let (map, op) = (self.map, &self.op);
        let expected: Vec<&str> = UPDATES.iter().map(|u| u.2).collect();

        // The update flags, from both sides.
        let user: Vec<String> = UPDATES
            .iter()
            .map(|&(k, f, _)| self.update(k, k.into(), f))
            .collect();
        let program = UPDATES
            .iter()
            .map(|&(k, f, _)| {
                let k = k + PROGRAM_KEYS;
                op(Op::Update, k, k.into(), f.into())
            })
            .collect::<CaseResult<Vec<_>>>()?;
        case.detail("updates", [&user, &program]);
        assert_eq!(
            user, expected,
            "user-space updates (key, flags): {UPDATES:?}"
        );
        assert_eq!(
            program, expected,
            "the program's updates (keys + {PROGRAM_KEYS})"
        );

        // Each side reads what the other wrote.
        assert_eq!(op(Op::Lookup, 2, 0, 0)?, OK);
        assert_eq!(
            (self.looked_up)(),
            2,
            "the program reads the value user space stored"
        );
        let stored = map.lookup(&u32b(2 + PROGRAM_KEYS), MapFlags::ANY)?;
        assert_eq!(
            stored.as_deref().map(as_u64),
            Some(102),
            "user space reads the program's"
        );

        // The program's counter: three events for key 50.
        for _ in 0..3 {
            assert_eq!((self.count)(50)?, OK, "counting key 50");
        }
        let hits = map.lookup(&u32b(50), MapFlags::ANY)?;
        assert_eq!(
            hits.as_deref().map(as_u64),
            Some(3),
            "events counted for key 50"
        );

        // Five keys so far (1, 2, 101, 102, 50): fill the map.
        for key in [60, 61, 62] {
            assert_eq!(self.update(key, 0, BPF_NOEXIST), OK, "filling key {key}");
        }
        let full = [
            self.update(63, 0, BPF_ANY),
            op(Op::Update, 64, 0, BPF_ANY.into())?,
            (self.count)(65)?,
            self.update(1, 7, BPF_ANY),
            op(Op::Update, 101, 7, BPF_EXIST.into())?,
        ];
        case.detail("full", &full);
        assert_eq!(
            full,
            ["E2BIG", "E2BIG", "E2BIG", OK, OK],
            "a full map ({MAX_ENTRIES} keys): a new key from user space, from the program's \
             update and from its counter, then present keys from both sides"
        );

        // Deletes make room again.
        let deletes = [
            outcome(&map.delete(&u32b(63))),
            op(Op::Delete, 64, 0, 0)?,
            outcome(&map.delete(&u32b(60))),
            op(Op::Update, 64, 64, BPF_NOEXIST.into())?,
        ];
        assert_eq!(
            deletes,
            ["ENOENT", "ENOENT", OK, OK],
            "deleting absent 63 (user) and 64 (program), present 60, then inserting 64"
        );

        // BPF_MAP_GET_NEXT_KEY: an absent key starts over at the first; a walk visits each key once.
        map_ops::assert_next_after_absent_is_first(map, 999);
        let mut walked: Vec<u32> = map_ops::walk(map).iter().map(|k| as_u32(k)).collect();
        case.detail("walk", &walked);
        walked.sort_unstable();
        assert_eq!(walked, [1, 2, 50, 61, 62, 64, 101, 102], "keys walked");
        Ok(walked)
    }

    /// The `batch` case on an empty map: `BPF_MAP_UPDATE_BATCH`, `_LOOKUP_BATCH`, `_DELETE_BATCH`
    /// (stopping at an absent key with `ENOENT`) and `_LOOKUP_AND_DELETE_BATCH`, which leaves the
    /// map empty for the program. `floor`: the feature whose floor judges an update batch the
    /// kernel refuses (`EINVAL`, `ENOTSUPP`); without one, any refusal fails.
    pub fn batch(&self, floor: Option<&str>) -> CaseResult {
        let map = self.map;
        let keys: Vec<u8> = (1..=6u32).flat_map(u32b).collect();
        let values: Vec<u8> = (1..=6u64).flat_map(|k| u64b(k * 10)).collect();
        let first = map.update_batch(&keys, &values, 6, MapFlags::ANY, MapFlags::ANY);
        let answer = outcome(&first);
        if let Some(floor) = floor
            && (answer == "EINVAL" || answer == "ENOTSUPP")
        {
            return Err(floors::missing(
                floor,
                format!("BPF_MAP_UPDATE_BATCH answered {answer}"),
            ));
        }
        first?;
        let all = |delete: bool| -> CaseResult<BTreeMap<u32, u64>> {
            let pairs = map_ops::must(
                map_ops::lookup_batch(map, 4, 8, delete),
                "BPF_MAP_LOOKUP_BATCH",
            )?;
            Ok(pairs.iter().map(|(k, v)| (as_u32(k), as_u64(v))).collect())
        };
        let want = |keys: &[u64]| -> BTreeMap<u32, u64> {
            keys.iter().map(|&k| (k as u32, k * 10)).collect()
        };
        assert_eq!(
            all(false)?,
            want(&[1, 2, 3, 4, 5, 6]),
            "after the update batch"
        );
        assert_eq!((self.op)(Op::Lookup, 4, 0, 0)?, OK);
        assert_eq!(
            (self.looked_up)(),
            40,
            "the program reads a batch-written value"
        );

        let delete = |keys: &[u32]| {
            let bytes: Vec<u8> = keys.iter().copied().flat_map(u32b).collect();
            outcome(&map.delete_batch(&bytes, keys.len() as u32, MapFlags::ANY, MapFlags::ANY))
        };
        assert_eq!(delete(&[1, 2]), OK, "deleting keys 1 and 2");
        assert_eq!(
            delete(&[3, 1, 4]),
            "ENOENT",
            "a batch with absent key 1 in it"
        );
        assert_eq!(
            all(false)?,
            want(&[4, 5, 6]),
            "the second delete batch stopped at the absent key: 3 went, 4 stayed"
        );
        assert_eq!(
            all(true)?,
            want(&[4, 5, 6]),
            "what lookup-and-delete handed back"
        );
        assert_eq!(
            next_key(map, None),
            Err("ENOENT".to_owned()),
            "the map is empty"
        );
        assert_eq!(
            (self.op)(Op::Lookup, 5, 0, 0)?,
            "ENOENT",
            "the program finds the map empty"
        );
        Ok(())
    }
}
