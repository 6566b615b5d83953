//! Small text helpers every output format shares.

/// `1 case`, `2 cases`.
pub fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The first line of `s` (empty for an empty `s`).
pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
