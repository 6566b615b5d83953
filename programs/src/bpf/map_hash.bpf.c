// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_HASH as programs use it: event counters per key (look the key up, add atomically;
 * insert it with BPF_NOEXIST when missing, and count into the winner's entry when another CPU
 * inserted it first), plus the map's operations on the program side (map_op.h). Two maps of
 * MAX_ENTRIES: `prealloc` (elements allocated at creation, the default) and `no_prealloc`
 * (BPF_F_NO_PREALLOC: allocated by each insert).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "map_op.h"

#define MAX_ENTRIES 8

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, __u32);
	__type(value, __u64);
} prealloc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, __u32);
	__type(value, __u64);
} no_prealloc SEC(".maps");

/* One event for `key`: 0, or the insert's error (-E2BIG in a full map). */
static __always_inline int count(void *map, __u32 key)
{
#ifdef BPFCONF_MUTANT /* a key's first event inserts 0 instead of 1 (the first hit is lost) */
	__u64 one = 0, *hits = bpf_map_lookup_elem(map, &key);
#else
	__u64 one = 1, *hits = bpf_map_lookup_elem(map, &key);
#endif
	int err;

	if (hits) {
		__sync_fetch_and_add(hits, 1);
		return 0;
	}
	err = bpf_map_update_elem(map, &key, &one, BPF_NOEXIST);
	if (err != -EEXIST)
		return err;
	hits = bpf_map_lookup_elem(map, &key);
	if (hits)
		__sync_fetch_and_add(hits, 1);
	return 0;
}

/* ctx->args[0]: the key of the event. */
SEC("raw_tp")
int count_prealloc(struct bpf_raw_tracepoint_args *ctx)
{
	return count(&prealloc, ctx->args[0]);
}

SEC("raw_tp")
int count_no_prealloc(struct bpf_raw_tracepoint_args *ctx)
{
	return count(&no_prealloc, ctx->args[0]);
}

MAP_OP_PROGRAM(op_prealloc, prealloc)
MAP_OP_PROGRAM(op_no_prealloc, no_prealloc)

char _license[] SEC("license") = "GPL";
