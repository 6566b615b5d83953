//! The harness of the BPF conformance suite: loads and attaches the sample programs, observes
//! their behaviour from outside, probes kernel features, and records one result per case.
//!
//! A behaviour test is a [`Case`]:
//!
//! ```no_run
//! use testkit::{Case, probe};
//! use libbpf_rs::ProgramType;
//!
//! Case::run(ProgramType::Xdp, |case| {
//!     probe::prog_type(ProgramType::Xdp)?; // `unsupported` when the kernel lacks it (judged
//!                                          // against kernels/floors.toml)
//!     // open the skeleton, `case.load(open)?`, attach, send traffic, assert on what arrived
//!     Ok(())
//! });
//! ```

pub mod attach_type;
pub mod capture;
pub mod case;
pub mod cgroup;
pub mod child;
pub mod co_re;
pub mod cpus;
pub mod datagram;
pub mod ethtool;
pub mod floors;
pub mod ftrace;
pub mod hash_maps;
pub mod inner_maps;
pub mod insn;
pub mod jit;
pub mod kernel;
pub mod ksyscall;
pub mod link;
pub mod local_storage;
pub mod lsm;
pub mod map_in_map;
pub mod map_ops;
pub mod mib;
pub mod mounts;
pub mod netkit;
pub mod netlink;
pub mod netns;
pub mod observe;
pub mod outcome;
pub mod packet;
pub mod percpu_slots;
pub mod pins;
pub mod privilege;
pub mod probe;
pub mod queue_stack;
pub mod raw_load;
pub mod results;
pub mod runs;
pub mod snapshot;
pub mod sock_addr;
pub mod socket_refusal;
pub mod sockopt;
pub mod stream;
pub mod test_run;
pub mod trace_pipe;
pub mod tracing_multi;
pub mod traffic;
pub mod veth;
pub mod xdp;

pub use case::Case;
pub use cgroup::Cgroup;
pub use features;
pub use kernel::Kernel;
pub use load::{LoadOutcome, LogLevel};
pub use loader::{errno, load};
pub use netns::NetNs;
pub use outcome::{CaseError, CaseResult, OrError, Outcome};
pub use trace_pipe::TracePipe;

pub use record::workspace_root;
