// SPDX-License-Identifier: GPL-2.0
/*
 * sk_msg: a message verdict on a sockhash (BPF_SK_MSG_VERDICT, attached to `sock_hash`).
 *
 * Runs on every sendmsg()/send() of a TCP socket that is in `sock_hash`, before the bytes are
 * queued. The first byte of the message decides:
 *   'P'  pass: the message goes out as usual, to the sender's own peer;
 *   'E'  redirect, egress: it is sent out through the socket at key 1 of `sock_hash` instead
 *        (bpf_msg_redirect_hash), so that socket's peer receives it;
 *   'I'  redirect, ingress: it is queued on the receive side of the socket at key 1
 *        (BPF_F_INGRESS), so that socket's own reader receives it;
 *   else drop: the message is discarded and the sender's send() fails.
 * Counters per decision count the verdicts the program gave.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} sock_hash SEC(".maps");

__u64 passed = 0;
__u64 redirected_egress = 0;
__u64 redirected_ingress = 0;
__u64 dropped = 0;

SEC("sk_msg")
int msg_verdict(struct sk_msg_md *msg)
{
	__u32 target = 1;
	__u8 *data, *data_end;
	__u8 kind;

	/* Make sure the first byte is directly readable. */
	if ((void *)(long)msg->data + 1 > (void *)(long)msg->data_end)
		bpf_msg_pull_data(msg, 0, 1, 0);
	data = (void *)(long)msg->data;
	data_end = (void *)(long)msg->data_end;
	if (data + 1 > data_end) {
		__sync_fetch_and_add(&dropped, 1);
		return SK_DROP;
	}
	kind = data[0];

	switch (kind) {
	case 'P':
		__sync_fetch_and_add(&passed, 1);
		return SK_PASS;
	case 'E':
		__sync_fetch_and_add(&redirected_egress, 1);
		return bpf_msg_redirect_hash(msg, &sock_hash, &target, 0);
	case 'I':
		__sync_fetch_and_add(&redirected_ingress, 1);
#ifdef BPFCONF_MUTANT /* redirects an 'I' message without BPF_F_INGRESS (to the egress side; a copy-paste of the 'E' case) */
		return bpf_msg_redirect_hash(msg, &sock_hash, &target, 0);
#else
		return bpf_msg_redirect_hash(msg, &sock_hash, &target, BPF_F_INGRESS);
#endif
	default:
		__sync_fetch_and_add(&dropped, 1);
		return SK_DROP;
	}
}

char _license[] SEC("license") = "GPL";
