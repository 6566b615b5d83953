// SPDX-License-Identifier: GPL-2.0
/* xdp_metadata: XDP metadata handed to tc.
 *
 * xdp_set_meta: UDP to meta_port with at least META_LEN bytes of payload: the first META_LEN
 *   payload bytes are copied into the frame's metadata (bpf_xdp_adjust_meta); counted in
 *   `meta_set`. Everything passes (XDP_PASS).
 * tc_read_meta (tc ingress on the same device): an skb carrying at least META_LEN bytes of XDP
 *   metadata gets skb->mark = the metadata's first u32; counted in `meta_read`.
 */
#include <linux/pkt_cls.h>
#include "xdp_frames.h"

/* Bytes of metadata xdp_set_meta puts in front of a meta_port frame. */
#define META_LEN 4

/* Set by the test before loading. */
const volatile __u16 meta_port = 0;

__u64 meta_set = 0;
__u64 meta_read = 0;

SEC("xdp")
int xdp_set_meta(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct udphdr *udp = udp_to((void *)(long)ctx->data, data_end, meta_port);
	__u32 value;
	void *meta;

	if (!udp)
		return XDP_PASS;
	if ((void *)(udp + 1) + META_LEN > data_end)
		return XDP_PASS;
#ifdef BPFCONF_MUTANT /* copies the UDP header's first META_LEN bytes (the ports) instead of the payload's */
	__builtin_memcpy(&value, udp, META_LEN);
#else
	__builtin_memcpy(&value, udp + 1, META_LEN);
#endif
	if (bpf_xdp_adjust_meta(ctx, -META_LEN))
		return XDP_PASS;
	meta = (void *)(long)ctx->data_meta;
	if (meta + META_LEN > (void *)(long)ctx->data)
		return XDP_PASS;
	__builtin_memcpy(meta, &value, META_LEN);
	__sync_fetch_and_add(&meta_set, 1);
	return XDP_PASS;
}

SEC("tc")
int tc_read_meta(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *meta = (void *)(long)skb->data_meta;
	__u32 value;

	if (meta + META_LEN > data)
		return TC_ACT_OK;
	__builtin_memcpy(&value, meta, META_LEN);
	skb->mark = value;
	__sync_fetch_and_add(&meta_read, 1);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
