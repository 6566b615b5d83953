// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_BLOOM_FILTER as programs use it: a set of seen values that may answer "maybe" for
 * a value never added but never "no" for one that was. `add` pushes ctx->args[0] (with the flags
 * in ctx->args[1]), `check` peeks it: 0 when it may be in the set, -ENOENT when it is not.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 64);
	__uint(map_extra, 3);	/* hash functions */
	__type(value, __u64);
} seen SEC(".maps");

SEC("raw_tp")
int add(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 value = ctx->args[0];

#ifdef BPFCONF_MUTANT /* add ignores the caller's flags (always BPF_ANY) */
	return bpf_map_push_elem(&seen, &value, 0);
#else
	return bpf_map_push_elem(&seen, &value, ctx->args[1]);
#endif
}

SEC("raw_tp")
int check(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 value = ctx->args[0];

	return bpf_map_peek_elem(&seen, &value);
}

char _license[] SEC("license") = "GPL";
