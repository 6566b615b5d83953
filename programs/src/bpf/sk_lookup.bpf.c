// SPDX-License-Identifier: GPL-2.0
/*
 * sk_lookup: socket steering at the kernel's socket lookup of a network namespace (attached with a
 * netns link, BPF_SK_LOOKUP).
 *
 * TCP connections and UDP datagrams to 127.0.0.1 on a port in [port_lo, port_hi] land on one
 * socket chosen from the `targets` sockmap (key 0: a TCP listener, key 1: a UDP socket) with
 * bpf_sk_assign, whatever else is bound there; counted in `steered_tcp` / `steered_udp`. Every
 * other lookup goes on to the usual sockets (SK_PASS without a socket), counted in `passed`.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2

/* Set by the test before load (host order). */
const volatile __u32 port_lo = 0;
const volatile __u32 port_hi = 0;

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} targets SEC(".maps");

__u64 steered_tcp = 0;
__u64 steered_udp = 0;
__u64 passed = 0;

SEC("sk_lookup")
int steer_range(struct bpf_sk_lookup *ctx)
{
	struct bpf_sock *sk;
	__u32 key;
	long err;

	/* local_port is in host order, local_ip4 in network order. */
	if (ctx->family != AF_INET || ctx->local_ip4 != bpf_htonl(INADDR_LOOPBACK) ||
#ifdef BPFCONF_MUTANT /* treats the port range as half-open: port_hi itself is not steered (off by one) */
	    ctx->local_port < port_lo || ctx->local_port >= port_hi) {
#else
	    ctx->local_port < port_lo || ctx->local_port > port_hi) {
#endif
		__sync_fetch_and_add(&passed, 1);
		return SK_PASS;
	}
	if (ctx->protocol == IPPROTO_TCP)
		key = 0;
	else if (ctx->protocol == IPPROTO_UDP)
		key = 1;
	else
		return SK_PASS;
	sk = bpf_map_lookup_elem(&targets, &key);
	if (!sk)
		return SK_DROP;
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err)
		return SK_DROP;
	__sync_fetch_and_add(key ? &steered_udp : &steered_tcp, 1);
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
