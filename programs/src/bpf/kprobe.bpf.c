// SPDX-License-Identifier: GPL-2.0
/*
 * kprobe + kretprobe on the execve syscall's entry function, whose name the harness resolves at run
 * time (harness::ksyscall, as BCC's get_syscall_fnname: __x64_sys_execve, or sys_execve on kernels
 * without syscall wrappers). Every run of either program is one event in the ring buffer, in the
 * order the runs happened: the entry's {ENTRY, pid_tgid, filename}, the return's {RETURN,
 * pid_tgid, return value}. Nothing is merged or deduplicated here, so a probe that fires twice
 * shows as two events.
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define FILENAME_LEN 128
#define ENTRY 1
#define RETURN 2

/* Set before load: the entry function takes one struct pt_regs * holding the syscall's registers. */
const volatile int syscall_wrapper = 1;

struct exec_event {
	__u32 kind;
	__s32 ret;
	__u64 pid_tgid;
	char filename[FILENAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

SEC("kprobe")
int execve_entry(struct pt_regs *ctx)
{
	struct exec_event ev = { .kind = ENTRY, .pid_tgid = bpf_get_current_pid_tgid() };
	const char *filename;

	if (syscall_wrapper) {
		struct pt_regs *regs = (struct pt_regs *)PT_REGS_PARM1(ctx);

		bpf_probe_read_kernel(&filename, sizeof(filename), &PT_REGS_PARM1(regs));
	} else {
		filename = (const char *)PT_REGS_PARM1(ctx);
	}
	bpf_probe_read_user_str(ev.filename, sizeof(ev.filename), filename);
#ifdef BPFCONF_MUTANT /* the entry event is emitted twice per call (a hook that fires twice) */
	bpf_ringbuf_output(&events, &ev, sizeof(ev), 0);
	bpf_ringbuf_output(&events, &ev, sizeof(ev), 0);
	return 0;
}

SEC("kretprobe")
#else
	bpf_ringbuf_output(&events, &ev, sizeof(ev), 0);
	return 0;
}

SEC("kretprobe")
#endif
int execve_return(struct pt_regs *ctx)
{
	struct exec_event ev = {
		.kind = RETURN,
		.ret = PT_REGS_RC(ctx),
		.pid_tgid = bpf_get_current_pid_tgid(),
	};

	bpf_ringbuf_output(&events, &ev, 16, 0);
	return 0;
}

char _license[] SEC("license") = "GPL";
