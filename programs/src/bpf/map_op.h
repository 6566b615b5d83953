/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The program side of a map module's operations (tests/suite/map_*.rs): a raw tracepoint program
 * that BPF_PROG_TEST_RUN runs with its arguments as the request (harness::test_run::raw_tp):
 *
 *   ctx->args[0]  OP_UPDATE, OP_DELETE or OP_LOOKUP
 *   ctx->args[1]  the key (a __u32)
 *   ctx->args[2]  the value to store (a __u64)
 *   ctx->args[3]  the update's flags (BPF_ANY, BPF_NOEXIST, BPF_EXIST)
 *
 * It returns the helper's answer (0 or -errno; a lookup that finds nothing: -ENOENT) and leaves a
 * found value in the global `looked_up`, so the test compares each answer with the syscall side's.
 */
#ifndef MAP_OP_H
#define MAP_OP_H

#include <linux/errno.h>

#define OP_UPDATE 1
#define OP_DELETE 2
#define OP_LOOKUP 3

__u64 looked_up;

#define MAP_OP_PROGRAM(name, map)                                                      \
	SEC("raw_tp")                                                                  \
	int name(struct bpf_raw_tracepoint_args *ctx)                                  \
	{                                                                              \
		__u32 key = ctx->args[1];                                              \
		__u64 value = ctx->args[2], *found;                                    \
                                                                                       \
		switch (ctx->args[0]) {                                                \
		case OP_UPDATE:                                                        \
			return bpf_map_update_elem(&map, &key, &value, ctx->args[3]);  \
		case OP_DELETE:                                                        \
			return bpf_map_delete_elem(&map, &key);                        \
		case OP_LOOKUP:                                                        \
			found = bpf_map_lookup_elem(&map, &key);                       \
			if (!found)                                                    \
				return -ENOENT;                                        \
			looked_up = *found;                                            \
			return 0;                                                      \
		}                                                                      \
		return -EINVAL;                                                        \
	}

#endif
