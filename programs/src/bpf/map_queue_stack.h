/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The program side of the queue and stack modules (map_queue.bpf.c, map_stack.bpf.c): a raw
 * tracepoint program that BPF_PROG_TEST_RUN runs with its arguments as the request:
 *
 *   ctx->args[0]  OP_PUSH, OP_POP or OP_PEEK
 *   ctx->args[1]  the value to push (a __u64)
 *   ctx->args[2]  the push's flags (BPF_ANY, or BPF_EXIST to drop the oldest from a full map)
 *
 * It returns the helper's answer (0 or -errno) and leaves a popped or peeked value in `taken`.
 */
#ifndef MAP_QUEUE_STACK_H
#define MAP_QUEUE_STACK_H

#include <linux/errno.h>

#define OP_PUSH 1
#define OP_POP 2
#define OP_PEEK 3

#define MAX_ENTRIES 3

__u64 taken;

#define QUEUE_STACK_PROGRAM(name, map)                                                 \
	SEC("raw_tp")                                                                  \
	int name(struct bpf_raw_tracepoint_args *ctx)                                  \
	{                                                                              \
		__u64 value = ctx->args[1];                                            \
		int err;                                                               \
                                                                                       \
		switch (ctx->args[0]) {                                                \
		case OP_PUSH:                                                          \
			return bpf_map_push_elem(&map, &value, ctx->args[2]);          \
		case OP_POP:                                                           \
			err = bpf_map_pop_elem(&map, &value);                          \
			break;                                                         \
		case OP_PEEK:                                                          \
			err = bpf_map_peek_elem(&map, &value);                         \
			break;                                                         \
		default:                                                               \
			return -EINVAL;                                                \
		}                                                                      \
		if (!err)                                                              \
			taken = value;                                                 \
		return err;                                                            \
	}

#endif
