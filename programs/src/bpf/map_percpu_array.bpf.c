// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_PERCPU_ARRAY as programs use it: per-CPU counters without atomics, each run
 * counting in the slot of the CPU it runs on; `tag` hands back what user space stored in this
 * CPU's slot. The test runs both on each online CPU (BPF_F_TEST_RUN_ON_CPU).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <linux/errno.h>
#include "map_percpu.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct slot);
} slots SEC(".maps");

/* ctx->args[0]: the index. */
SEC("raw_tp")
int count(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 index = ctx->args[0];
	struct slot *s = bpf_map_lookup_elem(&slots, &index);

	if (!s)
		return -ENOENT;
	count_here(s);
	return 0;
}

SEC("raw_tp")
int tag(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 index = ctx->args[0];
	struct slot *s = bpf_map_lookup_elem(&slots, &index);

#ifdef BPFCONF_MUTANT /* tag returns the slot's run count instead of its tag */
	return s ? s->runs : -ENOENT;
#else
	return s ? s->tag : -ENOENT;
#endif
}

char _license[] SEC("license") = "GPL";
