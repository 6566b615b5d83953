// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_TASK_STORAGE (5.11) as tracing programs use it: a counter per task. On sys_enter
 * of a task in the test's cgroup (`cgroup_id`): getppid(2) counts in the task's own element,
 * created on demand (BPF_LOCAL_STORAGE_GET_F_CREATE); getpid(2) only looks the element up
 * (no flag) and counts whether it was there (`present`) or not (`absent`).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define NR_GETPID 39   /* x86_64 */
#define NR_GETPPID 110

struct task_struct;

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} counts SEC(".maps");

__u64 cgroup_id = 0;
__u32 present = 0;
__u32 absent = 0;
/* Gets with the create flag that answered NULL (the kernel could not create the element then). */
__u64 missed = 0;

SEC("raw_tracepoint/sys_enter")
int on_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task;
	__u64 *count;

	if (bpf_get_current_cgroup_id() != cgroup_id)
		return 0;
	task = bpf_get_current_task_btf();
	if (ctx->args[1] == NR_GETPPID) {
		count = bpf_task_storage_get(&counts, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (count)
			*count += 1;
		else
			__sync_fetch_and_add(&missed, 1);
	} else if (ctx->args[1] == NR_GETPID) {
#ifdef BPFCONF_MUTANT /* the presence check creates the storage (BPF_LOCAL_STORAGE_GET_F_CREATE): every task reads as present */
		if (bpf_task_storage_get(&counts, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
#else
		if (bpf_task_storage_get(&counts, task, 0, 0))
#endif
			present++;
		else
			absent++;
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
