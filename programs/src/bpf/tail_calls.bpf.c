// SPDX-License-Identifier: GPL-2.0
/*
 * Tail calls through a program array. Every program counts its runs in `counters`, so the test can
 * tell from outside which programs ran after one BPF_PROG_TEST_RUN:
 * - `entry` jumps to slot SLOT_CALLEE; when the jump happens, `callee` runs instead of the rest
 *   of `entry` and its return value (2) is the run's result;
 * - `to_empty` jumps to slot SLOT_EMPTY, which the test leaves empty: the call falls through;
 * - `recurse` sits in slot SLOT_RECURSE and jumps to itself until the kernel's limit refuses.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define SLOT_CALLEE 0
#define SLOT_EMPTY 1
#define SLOT_RECURSE 2

/* Indices of `counters`; tests/tail_calls.rs uses the same. */
enum {
	ENTRY_RAN,
	ENTRY_FELL_THROUGH,
	CALLEE_RAN,
	EMPTY_FELL_THROUGH,
	RECURSE_RAN,
	RECURSE_FELL_THROUGH,
	NR_COUNTERS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} jump_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NR_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void bump(__u32 index)
{
	__u64 *count = bpf_map_lookup_elem(&counters, &index);

	if (count)
		*count += 1;
}

SEC("socket")
int entry(struct __sk_buff *skb)
{
	bump(ENTRY_RAN);
#ifdef BPFCONF_MUTANT /* entry tail-calls the empty slot instead of the callee */
	bpf_tail_call(skb, &jump_table, SLOT_EMPTY);
#else
	bpf_tail_call(skb, &jump_table, SLOT_CALLEE);
#endif
	bump(ENTRY_FELL_THROUGH);
	return 1;
}

SEC("socket")
int callee(struct __sk_buff *skb)
{
	bump(CALLEE_RAN);
	return 2;
}

SEC("socket")
int to_empty(struct __sk_buff *skb)
{
	bpf_tail_call(skb, &jump_table, SLOT_EMPTY);
	bump(EMPTY_FELL_THROUGH);
	return 3;
}

SEC("socket")
int recurse(struct __sk_buff *skb)
{
	bump(RECURSE_RAN);
	bpf_tail_call(skb, &jump_table, SLOT_RECURSE);
	bump(RECURSE_FELL_THROUGH);
	return 4;
}

char _license[] SEC("license") = "GPL";
