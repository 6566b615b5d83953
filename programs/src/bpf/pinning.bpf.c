// SPDX-License-Identifier: GPL-2.0
/*
 * Persistence: a raw tracepoint on sys_enter counting the syscalls of one thread, whose id user
 * space writes into `config`. The test pins the link, the program and the `syscalls` map in bpffs,
 * drops every handle of the loader, and watches the count through the pinned map.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
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
	__u32 *tid = bpf_map_lookup_elem(&config, &key);
	__u64 *count;

	if (!tid || *tid != (__u32)bpf_get_current_pid_tgid())
		return 0;
	count = bpf_map_lookup_elem(&syscalls, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}

char _license[] SEC("license") = "GPL";
