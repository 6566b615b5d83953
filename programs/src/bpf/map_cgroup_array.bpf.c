// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_CGROUP_ARRAY (4.8): cgroups by slot, for the membership helpers. Slot 0 holds the
 * cgroup X, slot 1 its parent P.
 *  - `task_in_x` (raw tracepoint sys_enter): on getppid(2) of a task under P, counts whether
 *    bpf_current_task_under_cgroup says it is under X (`task_in_x`) or not (`task_not_in_x`);
 *  - `skb_in_x` (tc): counts whether bpf_skb_under_cgroup says the packet's socket is under X
 *    (`skb_in_x`), not (`skb_not_in_x`), or answers an error (`skb_other`).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#define NR_GETPPID 110 /* x86_64 */

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} cgroups SEC(".maps");

__u32 task_in_x = 0;
__u32 task_not_in_x = 0;
__u32 skb_in_x = 0;
__u32 skb_not_in_x = 0;
__u32 skb_other = 0;

SEC("raw_tracepoint/sys_enter")
int task_under(struct bpf_raw_tracepoint_args *ctx)
{
	if (ctx->args[1] != NR_GETPPID || bpf_current_task_under_cgroup(&cgroups, 1) != 1)
		return 0;
	if (bpf_current_task_under_cgroup(&cgroups, 0) == 1)
		__sync_fetch_and_add(&task_in_x, 1);
	else
		__sync_fetch_and_add(&task_not_in_x, 1);
	return 0;
}

SEC("tc")
int skb_under(struct __sk_buff *skb)
{
#ifdef BPFCONF_MUTANT /* checks the packet against slot 1 instead of slot 0 */
	long r = bpf_skb_under_cgroup(skb, &cgroups, 1);
#else
	long r = bpf_skb_under_cgroup(skb, &cgroups, 0);
#endif

	if (r == 1)
		__sync_fetch_and_add(&skb_in_x, 1);
	else if (r == 0)
		__sync_fetch_and_add(&skb_not_in_x, 1);
	else
		__sync_fetch_and_add(&skb_other, 1);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
