// SPDX-License-Identifier: GPL-2.0
/*
 * A raw tracepoint on sys_enter: counts syscalls by id for one thread, chosen from user space
 * before load (.rodata). Raw tracepoints see the tracepoint's raw arguments: for sys_enter,
 * args[0] is the pt_regs and args[1] the syscall id.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 target_tid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u64);
} counts SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int count_syscalls(struct bpf_raw_tracepoint_args *ctx)
{
#ifdef BPFCONF_MUTANT /* takes the syscall id from args[0] (the pt_regs pointer) instead of args[1] */
	__u64 id = ctx->args[0], one = 1, *n;
#else
	__u64 id = ctx->args[1], one = 1, *n;
#endif

	if ((__u32)bpf_get_current_pid_tgid() != target_tid)
		return 0;
	n = bpf_map_lookup_elem(&counts, &id);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&counts, &id, &one, BPF_NOEXIST);
	return 0;
}

char _license[] SEC("license") = "GPL";
