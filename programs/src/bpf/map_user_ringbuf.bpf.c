// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_USER_RINGBUF (6.1): user space produces, the program consumes. `drain` (run by
 * BPF_PROG_TEST_RUN as XDP) calls bpf_user_ringbuf_drain on `requests`; its callback reads each
 * sample {seq, ~seq} through the dynptr, appends seq to `seen` and counts samples whose second
 * word is not ~seq in `torn`. With `stop_after` set it stops the drain after that many samples
 * of the call (returns 1). `drained` is the helper's return.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 4096);
} requests SEC(".maps");

#define MAX_SEEN 32

__u64 seen[MAX_SEEN];
__u32 nseen = 0;
__u32 torn = 0;
__u32 stop_after = 0;
__s64 drained = 0;

static long take(struct bpf_dynptr *dynptr, void *ctx)
{
	__u32 *taken = ctx;
	__u64 words[2];
	__u32 i = nseen;

	if (bpf_dynptr_read(words, sizeof(words), dynptr, 0, 0)) {
		torn++;
		return 1;
	}
	if (words[1] != ~words[0])
		torn++;
	if (i >= MAX_SEEN)
		return 1;
	seen[i] = words[0];
	nseen = i + 1;
	*taken += 1;
#ifdef BPFCONF_MUTANT /* stops one sample after stop_after (> for >=: off by one) */
	return stop_after && *taken > stop_after;
#else
	return stop_after && *taken >= stop_after;
#endif
}

SEC("xdp")
int drain(struct xdp_md *ctx)
{
	__u32 taken = 0;

	drained = bpf_user_ringbuf_drain(&requests, take, &taken, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
