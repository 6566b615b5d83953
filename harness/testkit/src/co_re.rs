//! CO-RE relocations as libbpf reports them while loading (debug messages, see
//! [`crate::Case::try_load_with_messages`]): which field access of which program it patched, and
//! from the offset the object was compiled with to the running kernel's.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

/// `<program> #<relo>: <kind> <type>.<field>: <compiled> -> <kernel's>`, one per relocation
/// libbpf applied, in the order it reported them (type ids and instruction numbers left out:
/// they change with the kernel build and the compiler, not with the relocation).
pub fn relocations(messages: &str) -> Vec<String> {
    static SPEC: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"prog '([^']+)': relo #(\d+): <([a-z_]+)> \[\d+\] ([^ ]+ [^ ]+) \(")
            .expect("valid regex")
    });
    static PATCHED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"prog '([^']+)': relo #(\d+): patched insn #\d+ \([^)]*\) \w+ (\d+) -> (\d+)")
            .expect("valid regex")
    });
    let mut specs: BTreeMap<(String, u32), String> = BTreeMap::new();
    let mut applied = Vec::new();
    for line in messages.lines() {
        if let Some(c) = SPEC.captures(line) {
            let key = (c[1].to_owned(), c[2].parse().unwrap_or_default());
            // The first spec of a relocation is the object's; later ones are candidates.
            specs
                .entry(key)
                .or_insert_with(|| format!("<{}> {}", &c[3], &c[4]));
        } else if let Some(c) = PATCHED.captures(line) {
            let relo: u32 = c[2].parse().unwrap_or_default();
            let spec = specs
                .get(&(c[1].to_owned(), relo))
                .map_or("?", String::as_str);
            applied.push(format!("{} #{relo}: {spec}: {} -> {}", &c[1], &c[3], &c[4]));
        }
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_patched_access_with_both_offsets() {
        let messages = "\
libbpf: CO-RE relocating [10] struct task_struct: found target candidate [114] struct task_struct in [vmlinux]
libbpf: prog 'read_task': relo #0: <byte_off> [10] struct task_struct.pid (0:3 @ offset 28)
libbpf: prog 'read_task': relo #0: matching candidate #0 <byte_off> [114] struct task_struct.pid (0:92 @ offset 1264)
libbpf: prog 'read_task': relo #0: patched insn #20 (ALU/ALU64) imm 28 -> 1264
libbpf: prog 'read_task': relo #1: <byte_off> [10] struct task_struct.comm (0:0 @ offset 0)
libbpf: prog 'read_task': relo #1: matching candidate #0 <byte_off> [114] struct task_struct.comm (0:125 @ offset 1752)
libbpf: prog 'read_task': relo #1: patched insn #59 (LDX/ST/STX) off 0 -> 1752
";
        assert_eq!(
            relocations(messages),
            [
                "read_task #0: <byte_off> struct task_struct.pid: 28 -> 1264",
                "read_task #1: <byte_off> struct task_struct.comm: 0 -> 1752",
            ]
        );
    }
}
