//! The probe matrix: which program types, map types and helpers (per program type) the running
//! kernel offers, probed through libbpf (`libbpf_probe_bpf_prog_type`, `…_map_type`, `…_helper`,
//! each of which loads a minimal program or creates a minimal map), and which kfuncs ([`kfunc`]).
//! `bpfconf probe` prints it; `tests/suite/probe.rs` compares it with `bpftool feature probe
//! kernel`, `tests/suite/helper_matrix.rs` with the floors.

pub mod floors;
pub mod kfunc;

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// What the running kernel offers, by the kernel's names (`socket_filter`, `hash`,
/// `bpf_map_lookup_elem`). `None` where libbpf cannot probe (it answered an error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    /// The kernel id (`record::kernel_id`).
    pub kernel: String,
    /// `uname -r`.
    pub release: String,
    /// Program type → loadable.
    pub program_types: BTreeMap<String, Option<bool>>,
    /// Map type → creatable.
    pub map_types: BTreeMap<String, Option<bool>>,
    /// Program type → the helpers its programs may call (probed for available types only; types
    /// whose helpers libbpf cannot probe — tracing, ext, lsm, struct_ops — are absent).
    pub helpers: BTreeMap<String, Vec<String>>,
    /// Kfuncs: the BTF's own list where it has one, and the floors' kfuncs probed per program type
    /// (the same types as `helpers`).
    pub kfuncs: kfunc::Kfuncs,
}

impl Features {
    /// Probes the running kernel (needs CAP_BPF/CAP_SYS_ADMIN; a few thousand tiny loads, well
    /// under a second or two).
    pub fn probe() -> Self {
        Self::probe_helpers(&(1..libbpf_sys::__BPF_FUNC_MAX_ID).collect::<Vec<_>>())
    }

    /// [`Features::probe`] with only the helpers of ids `helper_ids` probed: a fraction of the
    /// loads, for emulated CPUs.
    pub fn probe_helpers(helper_ids: &[u32]) -> Self {
        let mut program_types = BTreeMap::new();
        let mut helpers = BTreeMap::new();
        let mut probed_types = Vec::new();
        for ty in 1..libbpf_sys::__MAX_BPF_PROG_TYPE {
            let Some(name) = prog_type_str(ty) else {
                continue;
            };
            // SAFETY: NULL opts are allowed.
            let available =
                answer(unsafe { libbpf_sys::libbpf_probe_bpf_prog_type(ty, std::ptr::null()) });
            if available == Some(true) {
                let callable: Option<Vec<String>> = helper_ids
                    .iter()
                    .filter_map(|&id| {
                        // SAFETY: NULL opts are allowed.
                        let ret = unsafe {
                            libbpf_sys::libbpf_probe_bpf_helper(ty, id, std::ptr::null())
                        };
                        match answer(ret) {
                            Some(true) => Some(Some(helper_name(id))),
                            Some(false) => None,
                            None => Some(None),
                        }
                    })
                    .collect();
                if let Some(callable) = callable {
                    helpers.insert(name.clone(), callable);
                    probed_types.push((ty, name.clone()));
                }
            }
            program_types.insert(name, available);
        }
        let map_types = (1..libbpf_sys::__MAX_BPF_MAP_TYPE)
            .filter_map(|ty| {
                let name = map_type_str(ty)?;
                // SAFETY: NULL opts are allowed.
                let ret = unsafe { libbpf_sys::libbpf_probe_bpf_map_type(ty, std::ptr::null()) };
                Some((name, answer(ret)))
            })
            .collect();
        let release = record::kernel_release();
        Features {
            kernel: record::kernel_id(&release),
            release,
            program_types,
            map_types,
            helpers,
            kfuncs: kfunc::probe(&kfunc::floor_rows(), &probed_types),
        }
    }

    /// Whether any program type may call helper `name` (`bpf_loop`): the kernel has it.
    pub fn has_helper(&self, name: &str) -> bool {
        self.helpers.values().any(|h| h.iter().any(|n| n == name))
    }

    /// A plain-text table: program types with their helper counts, map types, then kfuncs.
    pub fn table(&self) -> String {
        let mut out = format!("kernel {} ({})\n\n", self.kernel, self.release);
        let width = self
            .program_types
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(0);
        let _ = writeln!(out, "{:width$}  available  helpers", "program type");
        for (name, available) in &self.program_types {
            let helpers = self
                .helpers
                .get(name)
                .map_or_else(|| "-".to_owned(), |h| h.len().to_string());
            let _ = writeln!(out, "{name:width$}  {:9}  {helpers}", yes_no(*available));
        }
        let width = self.map_types.keys().map(String::len).max().unwrap_or(0);
        let _ = writeln!(out, "\n{:width$}  available", "map type");
        for (name, available) in &self.map_types {
            let _ = writeln!(out, "{name:width$}  {}", yes_no(*available));
        }
        let _ = writeln!(
            out,
            "\nkfuncs tagged in BTF: {}",
            self.kfuncs
                .tagged
                .as_ref()
                .map_or_else(|| "none (no list)".to_owned(), |t| t.len().to_string())
        );
        for (name, types) in &self.kfuncs.probed {
            let _ = writeln!(out, "{name}: {}", types.join(" "));
        }
        out
    }
}

fn yes_no(available: Option<bool>) -> &'static str {
    match available {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}

/// libbpf's probe answer: 1 yes, 0 no, negative: it cannot tell.
fn answer(ret: i32) -> Option<bool> {
    match ret {
        1 => Some(true),
        0 => Some(false),
        _ => None,
    }
}

/// The kernel's name of program type `ty` (`socket_filter`), as bpftool prints it.
pub fn prog_type_str(ty: u32) -> Option<String> {
    // SAFETY: a plain lookup; libbpf returns a static string or NULL.
    libbpf_str(unsafe { libbpf_sys::libbpf_bpf_prog_type_str(ty) })
}

/// The kernel's name of attach type `ty` (`cgroup_inet_ingress`), as bpftool prints it.
pub fn attach_type_str(ty: u32) -> Option<String> {
    // SAFETY: a plain lookup; libbpf returns a static string or NULL.
    libbpf_str(unsafe { libbpf_sys::libbpf_bpf_attach_type_str(ty) })
}

fn map_type_str(ty: u32) -> Option<String> {
    // SAFETY: a plain lookup; libbpf returns a static string or NULL.
    libbpf_str(unsafe { libbpf_sys::libbpf_bpf_map_type_str(ty) })
}

/// One of libbpf's static names (NULL: it has none).
fn libbpf_str(ptr: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: non-NULL pointers from libbpf's name lookups are NUL-terminated static strings.
    (!ptr.is_null()).then(|| {
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    })
}

/// `bpf_<name>` of helper `id` (`BPF_FUNC_<name>`), as bpftool names it.
pub fn helper_name(id: u32) -> String {
    match HELPERS.get(id as usize) {
        Some(name) => format!("bpf_{name}"),
        None => format!("helper#{id}"),
    }
}

/// The id of helper `name` (`bpf_loop` → `BPF_FUNC_loop`), if the UAPI header names it.
pub fn helper_id(name: &str) -> Option<u32> {
    let name = name.strip_prefix("bpf_")?;
    HELPERS.iter().position(|h| *h == name).map(|id| id as u32)
}

/// Helper names by id, from `___BPF_FUNC_MAPPER` of the UAPI header libbpf-sys ships.
const HELPERS: &[&str] = &[
    "unspec",
    "map_lookup_elem",
    "map_update_elem",
    "map_delete_elem",
    "probe_read",
    "ktime_get_ns",
    "trace_printk",
    "get_prandom_u32",
    "get_smp_processor_id",
    "skb_store_bytes",
    "l3_csum_replace",
    "l4_csum_replace",
    "tail_call",
    "clone_redirect",
    "get_current_pid_tgid",
    "get_current_uid_gid",
    "get_current_comm",
    "get_cgroup_classid",
    "skb_vlan_push",
    "skb_vlan_pop",
    "skb_get_tunnel_key",
    "skb_set_tunnel_key",
    "perf_event_read",
    "redirect",
    "get_route_realm",
    "perf_event_output",
    "skb_load_bytes",
    "get_stackid",
    "csum_diff",
    "skb_get_tunnel_opt",
    "skb_set_tunnel_opt",
    "skb_change_proto",
    "skb_change_type",
    "skb_under_cgroup",
    "get_hash_recalc",
    "get_current_task",
    "probe_write_user",
    "current_task_under_cgroup",
    "skb_change_tail",
    "skb_pull_data",
    "csum_update",
    "set_hash_invalid",
    "get_numa_node_id",
    "skb_change_head",
    "xdp_adjust_head",
    "probe_read_str",
    "get_socket_cookie",
    "get_socket_uid",
    "set_hash",
    "setsockopt",
    "skb_adjust_room",
    "redirect_map",
    "sk_redirect_map",
    "sock_map_update",
    "xdp_adjust_meta",
    "perf_event_read_value",
    "perf_prog_read_value",
    "getsockopt",
    "override_return",
    "sock_ops_cb_flags_set",
    "msg_redirect_map",
    "msg_apply_bytes",
    "msg_cork_bytes",
    "msg_pull_data",
    "bind",
    "xdp_adjust_tail",
    "skb_get_xfrm_state",
    "get_stack",
    "skb_load_bytes_relative",
    "fib_lookup",
    "sock_hash_update",
    "msg_redirect_hash",
    "sk_redirect_hash",
    "lwt_push_encap",
    "lwt_seg6_store_bytes",
    "lwt_seg6_adjust_srh",
    "lwt_seg6_action",
    "rc_repeat",
    "rc_keydown",
    "skb_cgroup_id",
    "get_current_cgroup_id",
    "get_local_storage",
    "sk_select_reuseport",
    "skb_ancestor_cgroup_id",
    "sk_lookup_tcp",
    "sk_lookup_udp",
    "sk_release",
    "map_push_elem",
    "map_pop_elem",
    "map_peek_elem",
    "msg_push_data",
    "msg_pop_data",
    "rc_pointer_rel",
    "spin_lock",
    "spin_unlock",
    "sk_fullsock",
    "tcp_sock",
    "skb_ecn_set_ce",
    "get_listener_sock",
    "skc_lookup_tcp",
    "tcp_check_syncookie",
    "sysctl_get_name",
    "sysctl_get_current_value",
    "sysctl_get_new_value",
    "sysctl_set_new_value",
    "strtol",
    "strtoul",
    "sk_storage_get",
    "sk_storage_delete",
    "send_signal",
    "tcp_gen_syncookie",
    "skb_output",
    "probe_read_user",
    "probe_read_kernel",
    "probe_read_user_str",
    "probe_read_kernel_str",
    "tcp_send_ack",
    "send_signal_thread",
    "jiffies64",
    "read_branch_records",
    "get_ns_current_pid_tgid",
    "xdp_output",
    "get_netns_cookie",
    "get_current_ancestor_cgroup_id",
    "sk_assign",
    "ktime_get_boot_ns",
    "seq_printf",
    "seq_write",
    "sk_cgroup_id",
    "sk_ancestor_cgroup_id",
    "ringbuf_output",
    "ringbuf_reserve",
    "ringbuf_submit",
    "ringbuf_discard",
    "ringbuf_query",
    "csum_level",
    "skc_to_tcp6_sock",
    "skc_to_tcp_sock",
    "skc_to_tcp_timewait_sock",
    "skc_to_tcp_request_sock",
    "skc_to_udp6_sock",
    "get_task_stack",
    "load_hdr_opt",
    "store_hdr_opt",
    "reserve_hdr_opt",
    "inode_storage_get",
    "inode_storage_delete",
    "d_path",
    "copy_from_user",
    "snprintf_btf",
    "seq_printf_btf",
    "skb_cgroup_classid",
    "redirect_neigh",
    "per_cpu_ptr",
    "this_cpu_ptr",
    "redirect_peer",
    "task_storage_get",
    "task_storage_delete",
    "get_current_task_btf",
    "bprm_opts_set",
    "ktime_get_coarse_ns",
    "ima_inode_hash",
    "sock_from_file",
    "check_mtu",
    "for_each_map_elem",
    "snprintf",
    "sys_bpf",
    "btf_find_by_name_kind",
    "sys_close",
    "timer_init",
    "timer_set_callback",
    "timer_start",
    "timer_cancel",
    "get_func_ip",
    "get_attach_cookie",
    "task_pt_regs",
    "get_branch_snapshot",
    "trace_vprintk",
    "skc_to_unix_sock",
    "kallsyms_lookup_name",
    "find_vma",
    "loop",
    "strncmp",
    "get_func_arg",
    "get_func_ret",
    "get_func_arg_cnt",
    "get_retval",
    "set_retval",
    "xdp_get_buff_len",
    "xdp_load_bytes",
    "xdp_store_bytes",
    "copy_from_user_task",
    "skb_set_tstamp",
    "ima_file_hash",
    "kptr_xchg",
    "map_lookup_percpu_elem",
    "skc_to_mptcp_sock",
    "dynptr_from_mem",
    "ringbuf_reserve_dynptr",
    "ringbuf_submit_dynptr",
    "ringbuf_discard_dynptr",
    "dynptr_read",
    "dynptr_write",
    "dynptr_data",
    "tcp_raw_gen_syncookie_ipv4",
    "tcp_raw_gen_syncookie_ipv6",
    "tcp_raw_check_syncookie_ipv4",
    "tcp_raw_check_syncookie_ipv6",
    "ktime_get_tai_ns",
    "user_ringbuf_drain",
    "cgrp_storage_get",
    "cgrp_storage_delete",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_names_follow_the_uapi_ids() {
        assert_eq!(HELPERS.len(), libbpf_sys::__BPF_FUNC_MAX_ID as usize);
        assert_eq!(
            helper_name(libbpf_sys::BPF_FUNC_map_lookup_elem),
            "bpf_map_lookup_elem"
        );
        assert_eq!(helper_name(libbpf_sys::BPF_FUNC_tail_call), "bpf_tail_call");
        assert_eq!(helper_id("bpf_loop"), Some(libbpf_sys::BPF_FUNC_loop));
        assert_eq!(helper_id("bpf_no_such_helper"), None);
        assert_eq!(
            helper_name(libbpf_sys::BPF_FUNC_cgrp_storage_delete),
            "bpf_cgrp_storage_delete"
        );
    }
}
