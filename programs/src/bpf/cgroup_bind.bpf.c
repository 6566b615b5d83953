// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup_bind: the bind(2) hooks of a cgroup v2 child that tests/suite/cgroup_sock_addr.rs does
 * not cover (its bind4 case rewrites an IPv4 port).
 *
 * bind6_rewrite (cgroup_sock_addr, BPF_CGROUP_INET6_BIND, before the bind): a bind to port
 * `from_port` binds [::1]:`to_port` instead, whatever address was asked (counted in
 * `bind6_rewritten`); a bind to `deny_port` is refused (verdict 0: EPERM, counted in
 * `bind6_denied`); anything else binds as asked.
 *
 * post_bind4_check / post_bind6_check (cgroup_sock, BPF_CGROUP_INET{4,6}_POST_BIND, once the port
 * is taken): record the bound address and port (for port 0, the one the kernel chose); a bound
 * port `deny_port` is refused (verdict 0: the kernel puts the port back, unbinds the socket and
 * bind fails with EPERM), counted in `post_bind_refused`, the others in `post_bind_allowed`.
 *
 * Ports are in host order here; bpf_sock_addr holds user_port in network order, bpf_sock holds
 * src_port in host order.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Set by the test before load. */
const volatile __u16 from_port = 0;
const volatile __u16 to_port = 0;
const volatile __u16 deny_port = 0;

__u64 bind6_rewritten = 0;
__u64 bind6_denied = 0;
__u64 post_bind_refused = 0;
__u64 post_bind_allowed = 0;
/* The last address and port each post-bind hook saw (addresses in network order). */
__u32 post_bind4_ip = 0;
__u32 post_bind4_port = 0;
__u32 post_bind6_ip[4] = {};
__u32 post_bind6_port = 0;

SEC("cgroup/bind6")
int bind6_rewrite(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port == bpf_htons(from_port)) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
		ctx->user_port = bpf_htons(to_port);
		__sync_fetch_and_add(&bind6_rewritten, 1);
		return 1;
	}
	if (ctx->user_port == bpf_htons(deny_port)) {
		__sync_fetch_and_add(&bind6_denied, 1);
		return 0;
	}
	return 1;
}

static __always_inline int post_bind_verdict(__u32 port)
{
#ifdef BPFCONF_MUTANT /* compares the post-bind port (host order in struct bpf_sock) with deny_port in network order */
	if (port == bpf_htons(deny_port)) {
#else
	if (port == deny_port) {
#endif
		__sync_fetch_and_add(&post_bind_refused, 1);
		return 0;
	}
	__sync_fetch_and_add(&post_bind_allowed, 1);
	return 1;
}

SEC("cgroup/post_bind4")
int post_bind4_check(struct bpf_sock *sk)
{
	__u32 port = sk->src_port;

	post_bind4_ip = sk->src_ip4;
	post_bind4_port = port;
	return post_bind_verdict(port);
}

SEC("cgroup/post_bind6")
int post_bind6_check(struct bpf_sock *sk)
{
	__u32 port = sk->src_port;

	post_bind6_ip[0] = sk->src_ip6[0];
	post_bind6_ip[1] = sk->src_ip6[1];
	post_bind6_ip[2] = sk->src_ip6[2];
	post_bind6_ip[3] = sk->src_ip6[3];
	post_bind6_port = port;
	return post_bind_verdict(port);
}

char _license[] SEC("license") = "GPL";
