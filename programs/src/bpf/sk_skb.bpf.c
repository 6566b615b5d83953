// SPDX-License-Identifier: GPL-2.0
/*
 * sk_skb: a stream parser and a stream verdict on a sockmap (BPF_SK_SKB_STREAM_PARSER and
 * BPF_SK_SKB_STREAM_VERDICT, attached to `sock_map`).
 *
 * Every TCP socket in `sock_map` hands the bytes it receives to these programs instead of its
 * receive queue. The parser cuts the stream into frames of a tiny protocol:
 *
 *     [kind: 1 byte][length: 2 bytes, big-endian][payload: length bytes]
 *
 * and the verdict decides per frame by its kind:
 *   'R'  redirect: the whole frame is sent out through the socket at key 1 of `sock_map`
 *        (bpf_sk_redirect_map, egress), so that socket's peer receives it;
 *   'P'  pass: the frame stays with the receiving socket (its reader gets it);
 *   else drop: the frame is discarded.
 * Counters per kind (frames and bytes the verdict saw) let the test check the parser's framing.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* The kinds of frame, and the size of a frame's header. */
#define KIND_REDIRECT 'R'
#define KIND_PASS 'P'
#define HEADER_LEN 3

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} sock_map SEC(".maps");

/* Frames the parser found (and their bytes). */
__u64 parsed_frames = 0;
/* Frames, and their bytes, per verdict. */
__u64 redirected_frames = 0;
__u64 redirected_bytes = 0;
__u64 passed_frames = 0;
__u64 passed_bytes = 0;
__u64 dropped_frames = 0;
__u64 dropped_bytes = 0;

SEC("sk_skb/stream_parser")
int frame_parser(struct __sk_buff *skb)
{
	__u8 header[HEADER_LEN];

	/* Fewer than HEADER_LEN bytes so far: 0 asks the strparser for more. */
	if (bpf_skb_load_bytes(skb, 0, header, HEADER_LEN) < 0)
		return 0;
	__sync_fetch_and_add(&parsed_frames, 1);
	return HEADER_LEN + ((header[1] << 8) | header[2]);
}

SEC("sk_skb/stream_verdict")
int frame_verdict(struct __sk_buff *skb)
{
	__u8 kind = 0;
	__u32 target = 1;

	bpf_skb_load_bytes(skb, 0, &kind, 1);
	if (kind == KIND_REDIRECT) {
		__sync_fetch_and_add(&redirected_frames, 1);
		__sync_fetch_and_add(&redirected_bytes, skb->len);
		return bpf_sk_redirect_map(skb, &sock_map, target, 0);
	}
	if (kind == KIND_PASS) {
		__sync_fetch_and_add(&passed_frames, 1);
#ifdef BPFCONF_MUTANT /* counts a passed frame's bytes without its header */
		__sync_fetch_and_add(&passed_bytes, skb->len - HEADER_LEN);
#else
		__sync_fetch_and_add(&passed_bytes, skb->len);
#endif
		return SK_PASS;
	}
	__sync_fetch_and_add(&dropped_frames, 1);
	__sync_fetch_and_add(&dropped_bytes, skb->len);
	return SK_DROP;
}

char _license[] SEC("license") = "GPL";
