// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_CGRP_STORAGE (6.2) as tracing programs use it: a counter per cgroup. On every
 * getppid(2) by a task of the cgroups `x_id` or `y_id`, the counter of the task's cgroup
 * (task->cgroups->dfl_cgrp, read through CO-RE) goes up, its element created on demand.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define NR_GETPPID 110 /* x86_64 */
/* Not in the build host's UAPI headers (6.1). */
#define BPF_MAP_TYPE_CGRP_STORAGE 32

struct cgroup;

/* CO-RE: the fields' offsets come from the running kernel's BTF. */
struct css_set {
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));

struct task_struct {
	struct css_set *cgroups;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} calls SEC(".maps");

__u64 x_id = 0;
__u64 y_id = 0;
/* Gets with the create flag that answered NULL (the kernel could not create the element then). */
__u64 missed = 0;

SEC("raw_tracepoint/sys_enter")
int count_calls(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task;
	__u64 id = bpf_get_current_cgroup_id();
	__u64 *count;

#ifdef BPFCONF_MUTANT /* the cgroup filter uses || for && (no call is ever counted) */
	if (ctx->args[1] != NR_GETPPID || (id != x_id || id != y_id))
#else
	if (ctx->args[1] != NR_GETPPID || (id != x_id && id != y_id))
#endif
		return 0;
	task = bpf_get_current_task_btf();
	count = bpf_cgrp_storage_get(&calls, task->cgroups->dfl_cgrp, 0,
				     BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (count)
		*count += 1;
	else
		__sync_fetch_and_add(&missed, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
