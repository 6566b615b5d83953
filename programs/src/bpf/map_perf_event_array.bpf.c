// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_PERF_EVENT_ARRAY (4.3) as a producer uses it, run by BPF_PROG_TEST_RUN as XDP
 * (`repeat` runs it many times in one call). Each run of `emit` writes one 52-byte sample
 * {sequence number, CPU} with bpf_perf_event_output, to the running CPU's slot
 * (BPF_F_CURRENT_CPU) or, when `use_index` is set, to slot `slot`. A written sample uses up its
 * sequence number; a refused write counts in `refused` with its error in `last_error`.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* 4 + 52 bytes of raw data are 8-aligned: a record is 8 (header) + 56 bytes. */
struct sample {
	__u32 seq;
	__u32 cpu;
	__u32 fill[11];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} events SEC(".maps");

__u32 next_seq = 0;
__u32 refused = 0;
__s64 last_error = 0;
__u32 use_index = 0;
__u32 slot = 0;

SEC("xdp")
int emit(struct xdp_md *ctx)
{
	struct sample s = {
		.seq = next_seq,
		.cpu = bpf_get_smp_processor_id(),
	};
	__u64 flags = use_index ? slot : BPF_F_CURRENT_CPU;
	long err = bpf_perf_event_output(ctx, &events, flags, &s, sizeof(s));

#ifdef BPFCONF_MUTANT /* advances next_seq when the output was refused too (a sequence number is skipped) */
	if (err) {
		refused++;
		last_error = err;
	}
	next_seq++;
#else
	if (err) {
		refused++;
		last_error = err;
	} else {
		next_seq++;
	}
#endif
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
