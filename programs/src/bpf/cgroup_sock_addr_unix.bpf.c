// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup_sock_addr_unix: a virtual name for an AF_UNIX service, for the sockets of a cgroup v2
 * child (the unix hooks, Linux 6.7+). All names are abstract and NAME_LEN bytes long (a NUL and
 * 15 characters).
 *
 * - connect_unix, sendmsg_unix: a connect(2) or unconnected send to `virtual_name` goes to
 *   `service_name` (counted in `redirected`);
 * - getpeername_unix, recvmsg_unix: `service_name`, as getpeername(2) shows a peer or recvmsg(2)
 *   the sender of a datagram, is shown as `virtual_name` (counted in `shown`);
 * - getsockname_unix: `local_name` is shown as `alias_name` (counted in `aliased`).
 * Other names are left alone. Every call is allowed (1). The address is the kernel's own
 * struct sockaddr_un behind the context (bpf_cast_to_kern_ctx), read through a read-only cast and
 * written with bpf_sock_addr_set_sun_path().
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define NAME_LEN 16

/* Kernel-internal types: field offsets are relocated against the running kernel's BTF. */
struct sockaddr;
struct bpf_sock_addr_kern {
	struct sockaddr *uaddr;
	__u32 uaddrlen;
} __attribute__((preserve_access_index));

struct sockaddr_un {
	unsigned short sun_family;
	char sun_path[108];
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
extern int bpf_sock_addr_set_sun_path(struct bpf_sock_addr_kern *sa_kern, const __u8 *sun_path,
				      __u32 sun_path__sz) __ksym;

/* The names, without a terminating NUL. */
__u8 virtual_name[NAME_LEN] = "\0bpfconf-virtual";
__u8 service_name[NAME_LEN] = "\0bpfconf-service";
__u8 local_name[NAME_LEN] = "\0bpfconf-localnm";
__u8 alias_name[NAME_LEN] = "\0bpfconf-aliased";

__u64 redirected = 0;
__u64 shown = 0;
__u64 aliased = 0;

/* Whether the context's address is `name`. */
static __always_inline int is_name(struct bpf_sock_addr_kern *sa, const __u8 *name)
{
	struct sockaddr_un *un;

	if (sa->uaddrlen != __builtin_offsetof(struct sockaddr_un, sun_path) + NAME_LEN)
		return 0;
	un = bpf_rdonly_cast(sa->uaddr, bpf_core_type_id_kernel(struct sockaddr_un));
#pragma unroll
	for (int i = 0; i < NAME_LEN; i++)
		if (un->sun_path[i] != name[i])
			return 0;
	return 1;
}

/* Replaces the address `from` with `to`. */
static __always_inline int rename(struct bpf_sock_addr *ctx, const __u8 *from, const __u8 *to,
				  __u64 *counter)
{
	struct bpf_sock_addr_kern *sa = bpf_cast_to_kern_ctx(ctx);

	if (is_name(sa, from) && !bpf_sock_addr_set_sun_path(sa, to, NAME_LEN))
		__sync_fetch_and_add(counter, 1);
	return 1;
}

SEC("cgroup/connect_unix")
int connect_unix_to_service(struct bpf_sock_addr *ctx)
{
	return rename(ctx, virtual_name, service_name, &redirected);
}

SEC("cgroup/sendmsg_unix")
int sendmsg_unix_to_service(struct bpf_sock_addr *ctx)
{
	return rename(ctx, virtual_name, service_name, &redirected);
}

SEC("cgroup/getpeername_unix")
int getpeername_unix_virtual(struct bpf_sock_addr *ctx)
{
	return rename(ctx, service_name, virtual_name, &shown);
}

SEC("cgroup/recvmsg_unix")
int recvmsg_unix_virtual(struct bpf_sock_addr *ctx)
{
	return rename(ctx, service_name, virtual_name, &shown);
}

SEC("cgroup/getsockname_unix")
int getsockname_unix_alias(struct bpf_sock_addr *ctx)
{
#ifdef BPFCONF_MUTANT /* getsockname_unix shows the virtual name instead of the alias (a copy-paste slip) */
	return rename(ctx, local_name, virtual_name, &aliased);
#else
	return rename(ctx, local_name, alias_name, &aliased);
#endif
}

char _license[] SEC("license") = "GPL";
