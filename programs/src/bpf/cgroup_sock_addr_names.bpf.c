// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup_sock_addr_names: a virtual service address for the sockets of a cgroup v2 child, over
 * IPv4 and IPv6, and the names the cgroup's sockets are shown.
 *
 * - connect4/6, sendmsg4/6: a connect(2) or an unconnected UDP send to the virtual address
 *   (`virtual_ip4`/`virtual_ip6`, `virtual_port`) goes to the loopback service at `service_port`
 *   (counted in `redirected`);
 * - getpeername4/6, recvmsg4/6: the loopback service's address, as getpeername(2) shows a peer
 *   or recvmsg(2) the source of a datagram, is shown as the virtual address (counted in `shown`);
 * - getsockname4/6: the loopback address at `local_port` is shown as `alias_ip4`/`alias_ip6` at
 *   `alias_port` (counted in `aliased`).
 * Other addresses are left alone. Every call is allowed (1). Ports are in host order here; the
 * context holds them in network order in the low 16 bits of user_port.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Set by the test before load; IPv4 addresses in host order, IPv6 ones as network-order words. */
const volatile __u32 virtual_ip4 = 0;
const volatile __u32 virtual_ip6[4] = {};
const volatile __u16 virtual_port = 0;
const volatile __u16 service_port = 0;
const volatile __u32 alias_ip4 = 0;
const volatile __u32 alias_ip6[4] = {};
const volatile __u16 local_port = 0;
const volatile __u16 alias_port = 0;

__u64 redirected = 0;
__u64 shown = 0;
__u64 aliased = 0;

#define LOOPBACK4 0x7f000001

static __always_inline int is4(struct bpf_sock_addr *ctx, __u32 ip, __u16 port)
{
	return ctx->user_ip4 == bpf_htonl(ip) && ctx->user_port == bpf_htons(port);
}

static __always_inline void set4(struct bpf_sock_addr *ctx, __u32 ip, __u16 port, __u64 *counter)
{
	ctx->user_ip4 = bpf_htonl(ip);
	ctx->user_port = bpf_htons(port);
	__sync_fetch_and_add(counter, 1);
}

/* ::1 is 0, 0, 0, htonl(1). */
static __always_inline int is_loopback6(struct bpf_sock_addr *ctx)
{
	return ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 && ctx->user_ip6[2] == 0 &&
	       ctx->user_ip6[3] == bpf_htonl(1);
}

static __always_inline int is6(struct bpf_sock_addr *ctx, const volatile __u32 *ip)
{
	return ctx->user_ip6[0] == ip[0] && ctx->user_ip6[1] == ip[1] &&
	       ctx->user_ip6[2] == ip[2] && ctx->user_ip6[3] == ip[3];
}

static __always_inline void set6(struct bpf_sock_addr *ctx, const volatile __u32 *ip, __u16 port,
				 __u64 *counter)
{
	ctx->user_ip6[0] = ip[0];
	ctx->user_ip6[1] = ip[1];
	ctx->user_ip6[2] = ip[2];
	ctx->user_ip6[3] = ip[3];
	ctx->user_port = bpf_htons(port);
	__sync_fetch_and_add(counter, 1);
}

static const __u32 loopback6[4] = { 0, 0, 0, bpf_htonl(1) };

/* The virtual address goes to the service. */
static __always_inline int to_service4(struct bpf_sock_addr *ctx)
{
	if (is4(ctx, virtual_ip4, virtual_port))
		set4(ctx, LOOPBACK4, service_port, &redirected);
	return 1;
}

static __always_inline int to_service6(struct bpf_sock_addr *ctx)
{
	if (is6(ctx, virtual_ip6) && ctx->user_port == bpf_htons(virtual_port))
		set6(ctx, loopback6, service_port, &redirected);
	return 1;
}

/* The service is shown as the virtual address. */
static __always_inline int show_virtual4(struct bpf_sock_addr *ctx)
{
	if (is4(ctx, LOOPBACK4, service_port))
		set4(ctx, virtual_ip4, virtual_port, &shown);
	return 1;
}

static __always_inline int show_virtual6(struct bpf_sock_addr *ctx)
{
	if (is_loopback6(ctx) && ctx->user_port == bpf_htons(service_port))
		set6(ctx, virtual_ip6, virtual_port, &shown);
	return 1;
}

SEC("cgroup/connect4")
int connect4_to_service(struct bpf_sock_addr *ctx)
{
	return to_service4(ctx);
}

SEC("cgroup/connect6")
int connect6_to_service(struct bpf_sock_addr *ctx)
{
	return to_service6(ctx);
}

SEC("cgroup/sendmsg4")
int sendmsg4_to_service(struct bpf_sock_addr *ctx)
{
	return to_service4(ctx);
}

SEC("cgroup/sendmsg6")
int sendmsg6_to_service(struct bpf_sock_addr *ctx)
{
	return to_service6(ctx);
}

SEC("cgroup/getpeername4")
int getpeername4_virtual(struct bpf_sock_addr *ctx)
{
	return show_virtual4(ctx);
}

SEC("cgroup/getpeername6")
int getpeername6_virtual(struct bpf_sock_addr *ctx)
{
	return show_virtual6(ctx);
}

SEC("cgroup/recvmsg4")
int recvmsg4_virtual(struct bpf_sock_addr *ctx)
{
	return show_virtual4(ctx);
}

SEC("cgroup/recvmsg6")
int recvmsg6_virtual(struct bpf_sock_addr *ctx)
{
	return show_virtual6(ctx);
}

SEC("cgroup/getsockname4")
int getsockname4_alias(struct bpf_sock_addr *ctx)
{
#ifdef BPFCONF_MUTANT /* getsockname4 shows the alias address with the local port instead of alias_port */
	if (is4(ctx, LOOPBACK4, local_port))
		set4(ctx, alias_ip4, local_port, &aliased);
#else
	if (is4(ctx, LOOPBACK4, local_port))
		set4(ctx, alias_ip4, alias_port, &aliased);
#endif
	return 1;
}

SEC("cgroup/getsockname6")
int getsockname6_alias(struct bpf_sock_addr *ctx)
{
	if (is_loopback6(ctx) && ctx->user_port == bpf_htons(local_port))
		set6(ctx, alias_ip6, alias_port, &aliased);
	return 1;
}

char _license[] SEC("license") = "GPL";
