// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_RINGBUF (5.8) as a producer uses it, run by BPF_PROG_TEST_RUN as XDP (`repeat` runs
 * it many times in one call). Each run of `produce` reserves one 64-byte record (8-byte header +
 * struct record) in `ring` holding the next sequence number, and submits it, or discards it
 * when its number is 1 modulo `discard_mod`, with `wake_flags` (BPF_RB_NO_WAKEUP,
 * BPF_RB_FORCE_WAKEUP or 0). A refused reservation (the ring is full) counts in `lost`; its
 * number is used up all the same. Every run ends with bpf_ringbuf_query's view of the ring.
 * `query_only` skips the reservation. `wake_sentinel` submits a record to `sentinel_ring` with
 * BPF_RB_FORCE_WAKEUP: the test's epoll sees it behind any wakeup of `ring` queued before it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct record {
	__u64 seq;
	__u64 pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} sentinel_ring SEC(".maps");

__u64 next_seq = 0;
__u64 lost = 0;
__u64 wake_flags = 0;
__u32 discard_mod = 0;
__u32 query_only = 0;
__u64 avail_data = 0;
__u64 ring_size = 0;
__u64 cons_pos = 0;
__u64 prod_pos = 0;

SEC("xdp")
int produce(struct xdp_md *ctx)
{
	struct record *r;

	if (query_only)
		goto query;
	r = bpf_ringbuf_reserve(&ring, sizeof(*r), 0);
	if (!r) {
		lost++;
	} else {
		r->seq = next_seq;
#ifdef BPFCONF_MUTANT /* discards the records whose seq % discard_mod is 0 instead of 1 (off by one) */
		if (discard_mod && next_seq % discard_mod == 0)
#else
		if (discard_mod && next_seq % discard_mod == 1)
#endif
			bpf_ringbuf_discard(r, wake_flags);
		else
			bpf_ringbuf_submit(r, wake_flags);
	}
	next_seq++;
query:
	avail_data = bpf_ringbuf_query(&ring, BPF_RB_AVAIL_DATA);
	ring_size = bpf_ringbuf_query(&ring, BPF_RB_RING_SIZE);
	cons_pos = bpf_ringbuf_query(&ring, BPF_RB_CONS_POS);
	prod_pos = bpf_ringbuf_query(&ring, BPF_RB_PROD_POS);
	return XDP_PASS;
}

SEC("xdp")
int wake_sentinel(struct xdp_md *ctx)
{
	__u64 *s = bpf_ringbuf_reserve(&sentinel_ring, sizeof(*s), 0);

	if (!s)
		return XDP_ABORTED;
	*s = 0;
	bpf_ringbuf_submit(s, BPF_RB_FORCE_WAKEUP);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
