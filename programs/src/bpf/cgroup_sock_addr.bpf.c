// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup_sock_addr: address rewrites at the socket calls of a cgroup v2 child.
 *
 * - connect4 / connect6: a connect(2) to port `service_port` goes to `backend_port` instead (a
 *   service redirect; the address is kept); counted in `connects_redirected`.
 * - bind4: a bind(2) to port `bind_from_port` binds `bind_to_port` instead; counted in
 *   `binds_rewritten`.
 * - sendmsg4: a UDP datagram sent to port `service_port` (unconnected sendto/sendmsg) goes to
 *   `backend_port`; counted in `sends_redirected`.
 * Every call is allowed (1). Ports are in host order here; the context holds them in network
 * order in the low 16 bits of user_port.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Set by the test before load. */
const volatile __u16 service_port = 0;
const volatile __u16 backend_port = 0;
const volatile __u16 bind_from_port = 0;
const volatile __u16 bind_to_port = 0;

__u64 connects_redirected = 0;
__u64 binds_rewritten = 0;
__u64 sends_redirected = 0;

static __always_inline int redirect(struct bpf_sock_addr *ctx, __u64 *counter)
{
	if (ctx->user_port == bpf_htons(service_port)) {
#ifdef BPFCONF_MUTANT /* writes backend_port into user_port in host byte order (no bpf_htons) */
		ctx->user_port = backend_port;
#else
		ctx->user_port = bpf_htons(backend_port);
#endif
		__sync_fetch_and_add(counter, 1);
	}
	return 1;
}

SEC("cgroup/connect4")
int connect4_redirect(struct bpf_sock_addr *ctx)
{
	return redirect(ctx, &connects_redirected);
}

SEC("cgroup/connect6")
int connect6_redirect(struct bpf_sock_addr *ctx)
{
	return redirect(ctx, &connects_redirected);
}

SEC("cgroup/sendmsg4")
int sendmsg4_redirect(struct bpf_sock_addr *ctx)
{
	return redirect(ctx, &sends_redirected);
}

SEC("cgroup/bind4")
int bind4_rewrite(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port == bpf_htons(bind_from_port)) {
		ctx->user_port = bpf_htons(bind_to_port);
		__sync_fetch_and_add(&binds_rewritten, 1);
	}
	return 1;
}

char _license[] SEC("license") = "GPL";
