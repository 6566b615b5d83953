//! The per-CPU map modules' value (`programs/src/bpf/map_percpu.h`: `struct slot`, 12 bytes, so
//! the syscall side's 8-byte-rounded slots are 16 with padding) and the checks they share: a
//! program counting on each online CPU leaves each CPU's runs in that CPU's slot and nowhere else,
//! as the kernel lays the slots out (one per possible CPU, in CPU order); and values user space
//! stores per CPU are what a program run on that CPU reads.

use libbpf_rs::{MapCore, MapFlags, ProgramMut};

use crate::map_ops::{self, as_u32};
use crate::outcome::CaseResult;
use crate::{cpus, test_run};

/// `struct slot` of map_percpu.h.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// The CPU the last counting run ran on.
    pub cpu: u32,
    /// The counting runs on this slot's CPU.
    pub runs: u32,
    /// What user space stored.
    pub tag: u32,
}

/// The size of `struct slot`.
pub const SIZE: usize = 12;

impl Slot {
    fn from_bytes(b: &[u8]) -> Slot {
        Slot {
            cpu: as_u32(&b[0..4]),
            runs: as_u32(&b[4..8]),
            tag: as_u32(&b[8..12]),
        }
    }

    fn to_bytes(self) -> Vec<u8> {
        [self.cpu, self.runs, self.tag]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    }
}

/// The runs [`count_on_each_cpu`] makes on `cpu`: distinct per CPU.
pub fn runs_on(cpu: u32) -> u32 {
    cpu + 1
}

/// Runs the counting program `count` (argument: `key`) [`runs_on`] times on each online CPU
/// (`BPF_F_TEST_RUN_ON_CPU`); each run must return 0. Returns the slots the map must then hold for
/// `key`, one per possible CPU: a CPU that ran counted its runs, any other is zero.
pub fn count_on_each_cpu(count: &ProgramMut<'_>, key: u32) -> CaseResult<Vec<Slot>> {
    let online = cpus::online()?;
    for &cpu in &online {
        for _ in 0..runs_on(cpu) {
            let ret = test_run::raw_tp(count, &[key.into()], Some(cpu))?;
            assert_eq!(ret, 0, "counting key {key} on CPU {cpu}");
        }
    }
    Ok(cpus::possible()?
        .into_iter()
        .map(|cpu| match online.contains(&cpu) {
            true => Slot {
                cpu,
                runs: runs_on(cpu),
                tag: 0,
            },
            false => Slot::default(),
        })
        .collect())
}

/// `key`'s slots as the kernel lays them out ([`map_ops::percpu_value`]: one per possible CPU, each
/// 8-byte rounded), checked against what libbpf-rs's `lookup_percpu` reads; `None` when absent.
pub fn read(map: &impl MapCore, key: u32) -> CaseResult<Option<Vec<Slot>>> {
    let Some(raw) = map_ops::percpu_value(map, &key.to_ne_bytes())? else {
        return Ok(None);
    };
    let stride = cpus::slot_size(SIZE);
    assert_eq!(stride, 16, "a 12-byte value's slot");
    let slots: Vec<Slot> = raw.chunks(stride).map(Slot::from_bytes).collect();
    let libbpf = map.lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY)?;
    let libbpf: Option<Vec<Slot>> =
        libbpf.map(|values| values.iter().map(|v| Slot::from_bytes(v)).collect());
    assert_eq!(libbpf.as_ref(), Some(&slots), "libbpf-rs's lookup_percpu");
    Ok(Some(slots))
}

/// The tag user space gives `cpu`'s slot in [`store_tags`].
pub fn tag_of(cpu: u32) -> u32 {
    1000 + cpu
}

/// Stores a slot for `key` with [`tag_of`] its CPU in each possible CPU's slot (`update_percpu`
/// with `flags`), and answers the update's outcome by name.
pub fn store_tags(map: &impl MapCore, key: u32, flags: MapFlags) -> CaseResult<String> {
    let values: Vec<Vec<u8>> = cpus::possible()?
        .into_iter()
        .map(|cpu| {
            Slot {
                tag: tag_of(cpu),
                ..Slot::default()
            }
            .to_bytes()
        })
        .collect();
    Ok(map_ops::outcome(&map.update_percpu(
        &key.to_ne_bytes(),
        &values,
        flags,
    )))
}

/// What the program `tag` (argument: `key`) returns on each online CPU: (CPU, its return).
pub fn tags_seen(tag: &ProgramMut<'_>, key: u32) -> CaseResult<Vec<(u32, u32)>> {
    cpus::online()?
        .into_iter()
        .map(|cpu| Ok((cpu, test_run::raw_tp(tag, &[key.into()], Some(cpu))?)))
        .collect()
}
