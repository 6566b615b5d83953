//! The behaviour tests, one module per program type (and per verifier/BTF/tail-call/... topic),
//! paired by name with `programs/src/bpf/<module>.bpf.c` and `tests/snapshots/<kernel>/<module>__*.snap`.
//! One test binary: one link, and a VM reads one file instead of dozens.

mod btf;
mod cgroup_device;
mod cgroup_skb;
mod cgroup_sock;
mod cgroup_sock_addr;
mod cgroup_sockopt;
mod cgroup_sysctl;
mod co_re;
mod fentry;
mod flow_dissector;
mod hello_world;
mod isa;
mod iter;
mod kprobe;
mod kprobe_multi;
mod license;
mod lwt;
mod lwt_seg6local;
mod netfilter;
mod netkit;
mod perf_event;
mod pinning;
mod probe;
mod raw_tracepoint;
mod records;
mod sched_act;
mod sched_cls;
mod sk_lookup;
mod sk_msg;
mod sk_reuseport;
mod sk_skb;
mod sk_skb_verdict;
mod skeleton;
mod sock_ops;
mod socket_filter;
mod syscall;
mod tail_calls;
mod tcx;
mod tp_btf;
mod tracepoint;
mod uprobe;
mod verifier;
mod xdp;
mod xdp_features;
