// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_ARRAY_OF_MAPS as programs use it: a table of per-tenant maps indexed by slot, which
 * user space swaps while the program stays loaded; `route` (map_in_map.h) reaches the inner map
 * of slot ctx->args[0].
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "map_in_map.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
#ifdef BPFCONF_MUTANT /* the outer map holds one inner map instead of two */
	__uint(max_entries, 1);
#else
	__uint(max_entries, 2);
#endif
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps");

ROUTE_PROGRAM(outer)

char _license[] SEC("license") = "GPL";
