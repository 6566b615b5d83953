// SPDX-License-Identifier: GPL-2.0
/*
 * CO-RE: task_struct is declared here with only the fields read, in an order and at offsets
 * that match no kernel; preserve_access_index makes clang record each access as a relocation,
 * which libbpf resolves against the running kernel's BTF before load. A raw tracepoint on
 * sys_enter reports, for the getpgid call whose argument is the marker (set before load), the
 * calling task's pid, tgid, comm and its parent's tgid, read from bpf_get_current_task().
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define TASK_COMM_LEN 16

struct task_struct {
	char comm[TASK_COMM_LEN];
	struct task_struct *real_parent;
	int tgid;
	int pid;
} __attribute__((preserve_access_index));

const volatile long getpgid_id = 0;
const volatile __u64 marker = 0;

__u32 hits = 0;
__s32 pid = 0;
__s32 tgid = 0;
__s32 parent_tgid = 0;
char comm[TASK_COMM_LEN] = {};

SEC("raw_tracepoint/sys_enter")
int read_task(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	struct task_struct *task;
	__u64 arg = 0;

	if (ctx->args[1] != getpgid_id)
		return 0;
	bpf_probe_read_kernel(&arg, sizeof(arg), &PT_REGS_PARM1(regs));
	if (arg != marker)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	pid = BPF_CORE_READ(task, pid);
	tgid = BPF_CORE_READ(task, tgid);
	parent_tgid = BPF_CORE_READ(task, real_parent, tgid);
	BPF_CORE_READ_STR_INTO(&comm, task, comm);
	hits += 1;
	return 0;
}

char _license[] SEC("license") = "GPL";
