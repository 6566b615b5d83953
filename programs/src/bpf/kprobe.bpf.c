// SPDX-License-Identifier: GPL-2.0
/*
 * kprobe + kretprobe on the execve syscall's entry function, whose name the harness resolves at run
 * time (harness::ksyscall, as BCC's get_syscall_fnname: __x64_sys_execve, or sys_execve on kernels
 * without syscall wrappers). Entry remembers the filename per thread; return emits
 * {pid, filename, return value} to a ring buffer.
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define FILENAME_LEN 128

/* Set before load: the entry function takes one struct pt_regs * holding the syscall's registers. */
const volatile int syscall_wrapper = 1;

struct exec_event {
	__u32 pid;
	__s32 ret;
	char filename[FILENAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct exec_event);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

SEC("kprobe")
int execve_entry(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct exec_event ev = { .pid = id >> 32 };
	const char *filename;

	if (syscall_wrapper) {
		struct pt_regs *regs = (struct pt_regs *)PT_REGS_PARM1(ctx);

		bpf_probe_read_kernel(&filename, sizeof(filename), &PT_REGS_PARM1(regs));
	} else {
		filename = (const char *)PT_REGS_PARM1(ctx);
	}
	bpf_probe_read_user_str(ev.filename, sizeof(ev.filename), filename);
	bpf_map_update_elem(&inflight, &id, &ev, BPF_ANY);
	return 0;
}

SEC("kretprobe")
int execve_return(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct exec_event *ev = bpf_map_lookup_elem(&inflight, &id);

	if (!ev)
		return 0;
	ev->ret = PT_REGS_RC(ctx);
	bpf_ringbuf_output(&events, ev, sizeof(*ev), 0);
	bpf_map_delete_elem(&inflight, &id);
	return 0;
}

char _license[] SEC("license") = "GPL";
