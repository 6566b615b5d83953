// SPDX-License-Identifier: GPL-2.0
/*
 * Map flags as programs meet them, one u64 array per flag:
 *
 * - `ro` (BPF_F_RDONLY_PROG): `read_ro` hands its value back in `seen`; `write_ro` stores
 *   ctx->args[0] into it, which the verifier must refuse;
 * - `wo` (BPF_F_WRONLY_PROG): `write_wo` stores ctx->args[0]; `read_wo` reads it, refused;
 * - `shared` (BPF_F_MMAPABLE, also frozen by the test): `shared_read` hands element
 *   ctx->args[0] back in `seen`, `shared_write` stores ctx->args[1] there;
 * - `locked`: a value holding a bpf_spin_lock, which the XDP program `locked_add` takes to add 1
 *   to `a` and 2 to `b` together (a lock needs BTF, and tracing programs may not take one).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define ARRAY_OF_ONE(name, flags)                                                      \
	struct {                                                                       \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                      \
		__uint(map_flags, flags);                                              \
		__uint(max_entries, 1);                                                \
		__type(key, __u32);                                                    \
		__type(value, __u64);                                                  \
	} name SEC(".maps")

ARRAY_OF_ONE(ro, BPF_F_RDONLY_PROG);
ARRAY_OF_ONE(wo, BPF_F_WRONLY_PROG);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} shared SEC(".maps");

struct locked_value {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 a;
	__u64 b;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct locked_value);
} locked SEC(".maps");

__u64 seen;

static __always_inline __u64 *first(void *map)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(map, &zero);
}

SEC("raw_tp")
int read_ro(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 *v = first(&ro);

	if (!v)
		return 1;
	seen = *v;
	return 0;
}

SEC("raw_tp")
int write_ro(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 *v = first(&ro);

	if (!v)
		return 1;
	*v = ctx->args[0];
	return 0;
}

SEC("raw_tp")
int write_wo(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 *v = first(&wo);

	if (!v)
		return 1;
	*v = ctx->args[0];
	return 0;
}

SEC("raw_tp")
int read_wo(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 *v = first(&wo);

	if (!v)
		return 1;
	seen = *v;
	return 0;
}

SEC("raw_tp")
int shared_read(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 index = ctx->args[0];
	__u64 *v = bpf_map_lookup_elem(&shared, &index);

	if (!v)
		return 1;
	seen = *v;
	return 0;
}

SEC("raw_tp")
int shared_write(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 index = ctx->args[0];
	__u64 *v = bpf_map_lookup_elem(&shared, &index);

	if (!v)
		return 1;
	*v = ctx->args[1];
	return 0;
}

SEC("xdp")
int locked_add(struct xdp_md *ctx)
{
	struct locked_value *v = first(&locked);

	if (!v)
		return XDP_ABORTED;
	bpf_spin_lock(&v->lock);
	v->a += 1;
	v->b += 2;
	bpf_spin_unlock(&v->lock);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
