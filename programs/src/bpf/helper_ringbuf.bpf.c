// SPDX-License-Identifier: GPL-2.0
/*
 * Ring buffer reserve/submit/discard (5.8), run by BPF_PROG_TEST_RUN as XDP: each run reserves one
 * record holding the sequence number the test put in .bss, and submits it, or discards it when the
 * test set `discard`. XDP_ABORTED when the reservation failed.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct record {
	__u64 seq;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} records SEC(".maps");

__u64 seq = 0;
__u32 discard = 0;

SEC("xdp")
int emit(struct xdp_md *ctx)
{
	struct record *r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);

	if (!r)
		return XDP_ABORTED;
	r->seq = seq;
	if (discard)
		bpf_ringbuf_discard(r, 0);
	else
		bpf_ringbuf_submit(r, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
