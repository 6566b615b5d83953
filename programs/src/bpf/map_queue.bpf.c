// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_QUEUE as programs use it: a FIFO of work items that programs and user space both
 * push to and pop from (map_queue_stack.h), MAX_ENTRIES items at most.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "map_queue_stack.h"

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
#ifdef BPFCONF_MUTANT /* the queue holds one item more than MAX_ENTRIES (off by one) */
	__uint(max_entries, MAX_ENTRIES + 1);
#else
	__uint(max_entries, MAX_ENTRIES);
#endif
	__type(value, __u64);
} items SEC(".maps");

QUEUE_STACK_PROGRAM(op, items)

char _license[] SEC("license") = "GPL";
