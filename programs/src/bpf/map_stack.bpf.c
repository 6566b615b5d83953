// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_STACK as programs use it: a LIFO of work items that programs and user space both
 * push to and pop from (map_queue_stack.h), MAX_ENTRIES items at most.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "map_queue_stack.h"

struct {
#ifdef BPFCONF_MUTANT /* the stack is declared BPF_MAP_TYPE_QUEUE (a copy-paste slip: FIFO instead of LIFO) */
	__uint(type, BPF_MAP_TYPE_QUEUE);
#else
	__uint(type, BPF_MAP_TYPE_STACK);
#endif
	__uint(max_entries, MAX_ENTRIES);
	__type(value, __u64);
} items SEC(".maps");

QUEUE_STACK_PROGRAM(op, items)

char _license[] SEC("license") = "GPL";
