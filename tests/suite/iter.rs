//! BPF iterators (`programs/src/bpf/iter.bpf.c`), read through an iterator fd (bpf_iter_create).
//!
//! - `task_lists_named_threads`: the test starts [`NAMES`] threads named by it and runs a task
//!   iterator filtered to its own process. The output must hold one line per thread with the
//!   process's tgid, the thread's tid and name: the named threads and the test's own thread with
//!   their names, every thread /proc/self/task lists before and after the read, and no other.
//! - `map_dumps_written_entries`: the test writes [`KEYS`] entries into a hash map and deletes
//!   every fifth; a map-element iterator must dump exactly the entries left, key and value.
//!
//! Each case loads only its own program, so a kernel with task but no map-element iterators
//! (5.8) still runs the first.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::thread::JoinHandle;

use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{Iter, Link, MapCore, MapFlags, ProgramType};
use programs::iter::{IterSkel, IterSkelBuilder};
use testkit::{Case, CaseResult, LogLevel, OrError, floors};

/// The threads the task case starts (names within the kernel's 15 characters).
const NAMES: [&str; 3] = ["iter-thread-0", "iter-thread-1", "iter-thread-2"];
/// Keys the map case writes (1..=KEYS); it deletes the multiples of 5.
const KEYS: u32 = 40;

/// Loads the object with only `program` enabled; a refusal is judged against the floor of `id`.
fn load<'obj>(
    case: &mut Case,
    object: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    program: &str,
    id: &str,
) -> CaseResult<IterSkel<'obj>> {
    if !floors::has(id, true) {
        return Err(floors::missing(id, "not loaded"));
    }
    let mut open = IterSkelBuilder::default().open(object)?;
    open.maps
        .rodata_data
        .as_deref_mut()
        .expect(".rodata is mmapped before load")
        .target_tgid = nix::unistd::getpid().as_raw();
    open.progs
        .list_threads
        .set_autoload(program == "list_threads");
    open.progs
        .dump_entries
        .set_autoload(program == "dump_entries");
    let (loaded, outcome) = case.try_load(open, LogLevel::Stats);
    loaded.map_err(|e| {
        floors::missing(
            id,
            format!(
                "loading iterator program {program}: {} ({e:#})",
                outcome.message.clone().unwrap_or_default()
            ),
        )
    })
}

/// Everything the iterator behind `link` prints, read through a new iterator fd.
fn read_all(link: &Link) -> CaseResult<String> {
    let mut text = String::new();
    Iter::new(link)?.read_to_string(&mut text)?;
    Ok(text)
}

/// Threads that wait until dropped (also when the case panics), each named as asked.
struct Named {
    stop: Option<mpsc::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    /// tid → name.
    tids: BTreeMap<i32, String>,
}

impl Named {
    fn start(names: &[&str]) -> CaseResult<Self> {
        let (stop, wait) = mpsc::channel::<()>();
        let wait = std::sync::Arc::new(std::sync::Mutex::new(wait));
        let (tid_tx, tid_rx) = mpsc::channel();
        let mut named = Named {
            stop: Some(stop),
            threads: Vec::new(),
            tids: BTreeMap::new(),
        };
        for name in names {
            let (wait, tid_tx) = (wait.clone(), tid_tx.clone());
            let thread = std::thread::Builder::new()
                .name((*name).to_owned())
                .spawn(move || {
                    let _ = tid_tx.send(nix::unistd::gettid().as_raw());
                    // Returns once the sender is dropped.
                    let _ = wait.lock().map(|w| w.recv());
                })
                .or_error("starting a named thread")?;
            named.threads.push(thread);
            let tid = tid_rx.recv().or_error("a named thread's tid")?;
            named.tids.insert(tid, (*name).to_owned());
        }
        Ok(named)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        self.stop.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The tids /proc/self/task lists now.
fn task_dir() -> CaseResult<BTreeSet<i32>> {
    std::fs::read_dir("/proc/self/task")
        .or_error("listing /proc/self/task")?
        .map(|e| {
            let name = e.or_error("reading /proc/self/task")?.file_name();
            name.to_string_lossy()
                .parse()
                .or_error("a /proc/self/task entry that is not a tid")
        })
        .collect()
}

#[test]
fn task_lists_named_threads() {
    Case::run(ProgramType::Tracing, |case| {
        let mut object = MaybeUninit::uninit();
        let id = "attach_type.iter_task";
        let skel = load(case, &mut object, "list_threads", id)?;
        let link = skel
            .progs
            .list_threads
            .attach_iter_with_opts(libbpf_rs::IterOpts::None)
            .map_err(|e| floors::missing(id, format!("attaching a task iterator: {e:#}")))?;

        let named = Named::start(&NAMES)?;
        let me = nix::unistd::gettid().as_raw();
        let my_name = std::fs::read_to_string("/proc/thread-self/comm")
            .or_error("reading the thread's comm")?;
        let before = task_dir()?;
        let text = read_all(&link)?;
        let after = task_dir()?;

        let pid = nix::unistd::getpid().as_raw();
        let mut listed: BTreeMap<i32, String> = BTreeMap::new();
        for line in text.lines() {
            let mut fields = line.splitn(3, ' ');
            let (tgid, tid, comm) = (fields.next(), fields.next(), fields.next());
            let (Some(Ok(tgid)), Some(Ok(tid)), Some(comm)) = (
                tgid.map(str::parse::<i32>),
                tid.map(str::parse::<i32>),
                comm,
            ) else {
                panic!("an iterator line that is not \"tgid tid comm\": {line:?}");
            };
            assert_eq!(tgid, pid, "the tgid of {line:?}");
            assert!(
                listed.insert(tid, comm.to_owned()).is_none(),
                "tid {tid} listed twice"
            );
        }
        case.detail("threads_listed", listed.len());
        for (tid, name) in named
            .tids
            .iter()
            .chain([(&me, &my_name.trim_end().to_owned())])
        {
            assert_eq!(
                listed.get(tid),
                Some(name),
                "the iterator's name for thread {tid}"
            );
        }
        let tids: BTreeSet<i32> = listed.keys().copied().collect();
        let stable: BTreeSet<i32> = before.intersection(&after).copied().collect();
        let seen: BTreeSet<i32> = before.union(&after).copied().collect();
        assert!(
            stable.is_subset(&tids),
            "threads alive throughout but not listed: {:?}",
            stable.difference(&tids).collect::<Vec<_>>()
        );
        assert!(
            tids.is_subset(&seen),
            "listed threads /proc/self/task never showed: {:?}",
            tids.difference(&seen).collect::<Vec<_>>()
        );
        drop(named);
        Ok(())
    });
}

#[test]
fn map_dumps_written_entries() {
    Case::run(ProgramType::Tracing, |case| {
        let mut object = MaybeUninit::uninit();
        let id = "attach_type.iter_bpf_map_elem";
        let skel = load(case, &mut object, "dump_entries", id)?;
        let map = &skel.maps.entries;
        let mut written = BTreeMap::new();
        for key in 1..=KEYS {
            let value = u64::from(key) * 1_000_003 + 7;
            map.update(&key.to_ne_bytes(), &value.to_ne_bytes(), MapFlags::NO_EXIST)?;
            written.insert(key, value);
        }
        for key in (5..=KEYS).step_by(5) {
            map.delete(&key.to_ne_bytes())?;
            written.remove(&key);
        }
        let link = skel
            .progs
            .dump_entries
            .attach_iter(map.as_fd())
            .map_err(|e| floors::missing(id, format!("attaching a map iterator: {e:#}")))?;

        let text = read_all(&link)?;
        let mut dumped = BTreeMap::new();
        for line in text.lines() {
            let parsed = line
                .split_once(' ')
                .and_then(|(k, v)| Some((k.parse::<u32>().ok()?, v.parse::<u64>().ok()?)));
            let Some((key, value)) = parsed else {
                panic!("an iterator line that is not \"key value\": {line:?}");
            };
            assert!(
                dumped.insert(key, value).is_none(),
                "key {key} dumped twice"
            );
        }
        case.detail("entries_dumped", dumped.len());
        assert_eq!(dumped, written, "the entries the iterator dumped");
        Ok(())
    });
}
