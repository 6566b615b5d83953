// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_LRU_HASH as programs use it: a connection table that never refuses a new entry
 * (a full map evicts instead), through the map's operations on the program side (map_op.h), which
 * the test runs on chosen CPUs. `common` has the default LRU list shared by all CPUs;
 * `percpu_lists` has BPF_F_NO_COMMON_LRU, one list per CPU (its max_entries, 5, is rounded up to
 * a multiple of the possible CPUs).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "map_op.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} common SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
#ifdef BPFCONF_MUTANT /* the per-CPU-lists map is created without BPF_F_NO_COMMON_LRU */
	__uint(map_flags, 0);
#else
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
#endif
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __u64);
} percpu_lists SEC(".maps");

MAP_OP_PROGRAM(op_common, common)
MAP_OP_PROGRAM(op_percpu_lists, percpu_lists)

char _license[] SEC("license") = "GPL";
