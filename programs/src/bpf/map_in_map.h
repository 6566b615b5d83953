/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The inner maps of the map-in-map modules (map_array_of_maps.bpf.c, map_hash_of_maps.bpf.c):
 * arrays of two u64, [INNER_ID] the inner map's identity (user space stores it), [INNER_HITS] the
 * lookups through it. `route` is how a program uses one: find the inner map under the outer key
 * ctx->args[0], count the lookup in it and return its identity (NO_INNER when the outer map has
 * none there).
 */
#ifndef MAP_IN_MAP_H
#define MAP_IN_MAP_H

#define INNER_ID 0
#define INNER_HITS 1
#define NO_INNER 0xffffffff

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
};

#define ROUTE_PROGRAM(outer)                                                           \
	SEC("raw_tp")                                                                  \
	int route(struct bpf_raw_tracepoint_args *ctx)                                 \
	{                                                                              \
		__u32 key = ctx->args[0], id = INNER_ID, hits = INNER_HITS;            \
		__u64 *identity, *counter;                                             \
		void *inner = bpf_map_lookup_elem(&outer, &key);                       \
                                                                                       \
		if (!inner)                                                            \
			return NO_INNER;                                               \
		identity = bpf_map_lookup_elem(inner, &id);                            \
		counter = bpf_map_lookup_elem(inner, &hits);                           \
		if (!identity || !counter)                                             \
			return NO_INNER;                                               \
		__sync_fetch_and_add(counter, 1);                                      \
		return *identity;                                                      \
	}

#endif
