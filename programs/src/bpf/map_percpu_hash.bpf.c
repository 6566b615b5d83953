// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_PERCPU_HASH as programs use it: per-CPU counters by key without atomics (a missing
 * key is inserted from this CPU with BPF_NOEXIST, which leaves the other CPUs' slots zero), each
 * run counting in the slot of the CPU it runs on; `tag` hands back what user space stored in this
 * CPU's slot. The test runs both on each online CPU (BPF_F_TEST_RUN_ON_CPU).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <linux/errno.h>
#include "map_percpu.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct slot);
} slots SEC(".maps");

/* ctx->args[0]: the key; 0, or the insert's error. */
SEC("raw_tp")
int count(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 key = ctx->args[0];
	struct slot zero = {}, *s = bpf_map_lookup_elem(&slots, &key);
	int err;

	if (!s) {
#ifdef BPFCONF_MUTANT /* inserts a new key with BPF_EXIST instead of BPF_NOEXIST (a new key is never created) */
		err = bpf_map_update_elem(&slots, &key, &zero, BPF_EXIST);
#else
		err = bpf_map_update_elem(&slots, &key, &zero, BPF_NOEXIST);
#endif
		if (err && err != -EEXIST)
			return err;
		s = bpf_map_lookup_elem(&slots, &key);
		if (!s)
			return -ENOENT;
	}
	count_here(s);
	return 0;
}

SEC("raw_tp")
int tag(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 key = ctx->args[0];
	struct slot *s = bpf_map_lookup_elem(&slots, &key);

	return s ? s->tag : -ENOENT;
}

char _license[] SEC("license") = "GPL";
