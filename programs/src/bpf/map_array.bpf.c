// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_ARRAY as programs use it: counters by index (look the index up, add atomically;
 * an index past the end finds nothing), plus the map's operations on the program side
 * (map_op.h). MAX_ENTRIES u64 values, all present from creation.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "map_op.h"

#define MAX_ENTRIES 4

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* ctx->args[0]: the index of the event; 0, or -ENOENT past the end. */
SEC("raw_tp")
int count(struct bpf_raw_tracepoint_args *ctx)
{
#ifdef BPFCONF_MUTANT /* counts the event in the next slot (index + 1: off by one) */
	__u32 index = ctx->args[0] + 1;
	__u64 *hits = bpf_map_lookup_elem(&counters, &index);
#else
	__u32 index = ctx->args[0];
	__u64 *hits = bpf_map_lookup_elem(&counters, &index);
#endif

	if (!hits)
		return -ENOENT;
	__sync_fetch_and_add(hits, 1);
	return 0;
}

MAP_OP_PROGRAM(op, counters)

char _license[] SEC("license") = "GPL";
