//! The maps a test run sees. `test_loader.c` runs every program in a fresh object, so each test
//! run starts from the maps' initial contents; programs loaded from one prepared object share its
//! maps, so before a test run the maps another run may have written are put back: global data
//! to its initial bytes, arrays to zeros, hash-like maps, queues and stacks emptied. A map that
//! cannot be put back (ring buffers, storage maps, arenas, …) makes the next run use a fresh
//! object instead. Then the tree's pre-execution hook, if its `prog_tests/verifier.c` has one for
//! the object, fills in what the test expects.

use libbpf_rs::{MapCore, MapFlags, MapType, Object};

/// `struct test_val` of `prog_tests/verifier.c` as its `init_test_val_map` fills it: `index` =
/// (6 + 1) * sizeof(int), `foo[6]` = 0xabcdef12, eleven ints of `foo`.
fn test_val() -> Vec<u8> {
    let mut v = vec![0u8; 4 + 11 * 4];
    v[..4].copy_from_slice(&28u32.to_ne_bytes());
    v[4 + 6 * 4..4 + 7 * 4].copy_from_slice(&0xabcd_ef12u32.to_ne_bytes());
    v
}

/// The pre-execution hooks of the trees' `prog_tests/verifier.c` this suite reproduces: the
/// hook's name → the map it writes `struct test_val` into at key 0.
pub const HOOKS: &[(&str, &str)] = &[
    ("init_array_access_maps", "map_array_ro"),
    ("init_value_ptr_arith_maps", "map_array_48b"),
];

/// Runs hook `hook` on `object`.
pub fn run_hook(object: &Object, hook: &str) -> Result<(), String> {
    let (_, map_name) = HOOKS
        .iter()
        .find(|(h, _)| *h == hook)
        .ok_or_else(|| format!("pre-execution hook {hook} is not reproduced by the suite"))?;
    let map = object
        .maps()
        .find(|m| m.name() == *map_name)
        .ok_or_else(|| format!("Can't find map '{map_name}'"))?;
    map.update(&0u32.to_ne_bytes(), &test_val(), MapFlags::ANY)
        .map_err(|e| format!("Error while updating map '{map_name}': {e}"))
}

/// Whether every map of `object` can be put back to its initial contents.
pub fn resettable(object: &Object) -> bool {
    object
        .maps()
        .all(|m| kind(m.map_type(), &m.name().to_string_lossy()).is_some())
}

/// What putting a map back means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reset {
    /// Nothing: programs cannot write it.
    Keep,
    /// Global data: its initial bytes at key 0.
    Initial,
    /// Every element zeroed.
    Zero,
    /// Every key deleted.
    Delete,
    /// Popped until empty.
    Pop,
}

fn kind(ty: MapType, name: &str) -> Option<Reset> {
    use MapType as T;
    if name.contains(".rodata") || name.contains(".kconfig") {
        return Some(Reset::Keep);
    }
    if name.contains(".data") || name.contains(".bss") {
        return Some(Reset::Initial);
    }
    Some(match ty {
        T::Array | T::PercpuArray => Reset::Zero,
        T::Hash | T::PercpuHash | T::LruHash | T::LruPercpuHash | T::LpmTrie => Reset::Delete,
        T::Queue | T::Stack => Reset::Pop,
        T::ProgArray | T::ArrayOfMaps | T::HashOfMaps | T::PerfEventArray => Reset::Keep,
        _ => return None,
    })
}

/// Arrays larger than this are not zeroed element by element (a fresh object is cheaper).
const MAX_ZEROED: u32 = 4096;

/// Puts every map of `object` back; `initial` holds the global-data maps' initial bytes by name.
/// `Err` names the map that could not be (the caller uses a fresh object).
pub fn reset(object: &Object, initial: &[(String, Vec<u8>)]) -> Result<(), String> {
    let cpus = libbpf_rs::num_possible_cpus().map_err(|e| e.to_string())?;
    for map in object.maps() {
        let name = map.name().to_string_lossy().into_owned();
        let fail = |e: libbpf_rs::Error| format!("map {name}: {e}");
        match kind(map.map_type(), &name) {
            None => return Err(format!("map {name} ({:?}) cannot be reset", map.map_type())),
            Some(Reset::Keep) => {}
            Some(Reset::Initial) => {
                if let Some((_, bytes)) = initial.iter().find(|(n, _)| *n == name) {
                    map.update(&0u32.to_ne_bytes(), bytes, MapFlags::ANY)
                        .map_err(fail)?;
                }
            }
            Some(Reset::Zero) => {
                if map.max_entries() > MAX_ZEROED {
                    return Err(format!("map {name} has {} entries", map.max_entries()));
                }
                let value = vec![0u8; map.value_size() as usize];
                let percpu = map.map_type() == MapType::PercpuArray;
                let per_cpu: Vec<Vec<u8>> = vec![value.clone(); cpus];
                for i in 0..map.max_entries() {
                    let key = i.to_ne_bytes();
                    if percpu {
                        map.update_percpu(&key, &per_cpu, MapFlags::ANY)
                    } else {
                        map.update(&key, &value, MapFlags::ANY)
                    }
                    .map_err(fail)?;
                }
            }
            Some(Reset::Delete) => {
                let keys: Vec<Vec<u8>> = map.keys().collect();
                for key in keys {
                    map.delete(&key).map_err(fail)?;
                }
            }
            Some(Reset::Pop) => while map.lookup_and_delete(&[]).map_err(fail)?.is_some() {},
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_val_is_laid_out_as_verifier_c_fills_it() {
        let v = test_val();
        assert_eq!(v.len(), 48);
        assert_eq!(u32::from_ne_bytes(v[0..4].try_into().unwrap()), 28);
        assert_eq!(
            u32::from_ne_bytes(v[28..32].try_into().unwrap()),
            0xabcd_ef12
        );
    }
}
