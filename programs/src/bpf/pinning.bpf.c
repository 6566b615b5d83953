// SPDX-License-Identifier: GPL-2.0
/*
 * Persistence: a raw tracepoint on sys_enter counting one syscall of one thread, both of which
 * user space writes into `config` (so the count is exactly the calls the test makes). The test
 * pins the link, the program and the `syscalls` map in bpffs, drops every handle of the loader,
 * and watches the count through the pinned map.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct target {
	__u32 tid;
	__u32 syscall;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct target);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} syscalls SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int count_syscalls(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 key = 0;
	struct target *target = bpf_map_lookup_elem(&config, &key);
	__u64 *count;

	if (!target || target->tid != (__u32)bpf_get_current_pid_tgid() ||
	    target->syscall != ctx->args[1])
		return 0;
	count = bpf_map_lookup_elem(&syscalls, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}

char _license[] SEC("license") = "GPL";
