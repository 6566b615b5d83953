// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_STACK_TRACE (4.6) as a profiler uses it: on every getppid(2) of the thread `tid`
 * (raw tracepoint sys_enter), bpf_get_stackid stores the thread's user stack in two maps of the
 * same shape, two buckets each: `plain` (a stack whose bucket holds another stack gets -EEXIST)
 * and `reused` (BPF_F_REUSE_STACKID: it replaces that stack). The ids (or errors) of each call
 * go to `plain_ids`/`reused_ids` in call order.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define NR_GETPPID 110 /* x86_64 */
#define MAX_FRAMES 40
#define MAX_CALLS 64

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_FRAMES * sizeof(__u64));
} plain SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_FRAMES * sizeof(__u64));
} reused SEC(".maps");

__u32 tid = 0;
__u32 calls = 0;
__s64 plain_ids[MAX_CALLS];
__s64 reused_ids[MAX_CALLS];

SEC("raw_tracepoint/sys_enter")
int on_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 i = calls;

	if (ctx->args[1] != NR_GETPPID || (__u32)bpf_get_current_pid_tgid() != tid)
		return 0;
	if (i >= MAX_CALLS)
		return 0;
	plain_ids[i] = bpf_get_stackid(ctx, &plain, BPF_F_USER_STACK);
#ifdef BPFCONF_MUTANT /* the second map is queried without BPF_F_REUSE_STACKID */
	reused_ids[i] = bpf_get_stackid(ctx, &reused, BPF_F_USER_STACK);
#else
	reused_ids[i] = bpf_get_stackid(ctx, &reused, BPF_F_USER_STACK | BPF_F_REUSE_STACKID);
#endif
	calls = i + 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
