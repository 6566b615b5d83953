// SPDX-License-Identifier: GPL-2.0
/*
 * A perf event program: runs on every sample of the perf event it is attached to and counts the
 * samples that interrupted the thread chosen before load (.rodata).
 */
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 target_tid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} samples SEC(".maps");

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	/* Slot 0: samples of the target thread; slot 1: any other. */
#ifdef BPFCONF_MUTANT /* compares the process id (tgid, the upper half) instead of the thread id with target_tid */
	__u32 slot = (__u32)(bpf_get_current_pid_tgid() >> 32) == target_tid ? 0 : 1;
#else
	__u32 slot = (__u32)bpf_get_current_pid_tgid() == target_tid ? 0 : 1;
#endif
	__u64 *n = bpf_map_lookup_elem(&samples, &slot);

	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

char _license[] SEC("license") = "GPL";
