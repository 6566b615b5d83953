//! Expected text in a verifier log, a disassembly or a BPF stream (`__msg`, `__not_msg`,
//! `__xlated`, `__jited`, `__stderr`, `__stdout`), matched as `test_loader.c` matches it:
//! verbatim text with `{{…}}` parts that are POSIX extended regular expressions (compiled with
//! `REG_NEWLINE`), positive patterns found in order, each after the previous match, a pattern
//! marked "on the next line" only on the line after the previous match, and negative patterns
//! absent between the positive matches around them.

use std::fmt;

use regex::Regex;

/// `test_loader.c` compiles a pattern into a 256-byte buffer.
const REGEX_BUF: usize = 256;

/// One expected (or, negative, unexpected) piece of text.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// The text as the annotation wrote it.
    pub text: String,
    regex: Option<Regex>,
    /// Must match on the line after the previous positive match (disassembly patterns).
    pub on_next_line: bool,
    /// `__not_msg`: must not appear.
    pub negative: bool,
}

impl Pattern {
    /// A pattern (verbatim text unless it holds `{{…}}`); `Err` names what the tree's loader
    /// would refuse (too long, unbalanced braces, a regex that does not compile).
    pub fn new(text: &str, on_next_line: bool, negative: bool) -> Result<Self, String> {
        let regex = if text.contains("{{") {
            Some(compile(text)?)
        } else {
            None
        };
        Ok(Pattern {
            text: text.to_owned(),
            regex,
            on_next_line,
            negative,
        })
    }

    /// The first match in `hay` as a byte range.
    fn find(&self, hay: &str) -> Option<(usize, usize)> {
        match &self.regex {
            Some(re) => re.find(hay).map(|m| (m.start(), m.end())),
            None => hay
                .find(self.text.as_str())
                .map(|at| (at, at + self.text.len())),
        }
    }

    fn kind(&self) -> &'static str {
        if self.regex.is_some() {
            "regex"
        } else {
            "substring"
        }
    }
}

/// The pattern list `push_disasm_msg` builds: `...` drops the next pattern's "on the next line".
#[derive(Debug, Clone)]
pub struct DisasmList {
    /// The patterns so far.
    pub patterns: Vec<Pattern>,
    next_line: bool,
}

impl Default for DisasmList {
    /// A list whose first pattern may match anywhere (it has no previous match).
    fn default() -> Self {
        DisasmList {
            patterns: Vec::new(),
            next_line: true,
        }
    }
}

impl DisasmList {
    /// Restarts the "on the next line" chain (`__arch_*` does for `__jited`).
    pub fn restart(&mut self) {
        self.next_line = true;
    }

    /// Adds `text` (or, for `...`, lets the next pattern match on any later line).
    pub fn push(&mut self, text: &str) -> Result<(), String> {
        if text == "..." {
            self.next_line = false;
            return Ok(());
        }
        self.patterns
            .push(Pattern::new(text, self.next_line, false)?);
        self.next_line = true;
        Ok(())
    }
}

/// Why a text did not match its patterns: the first pattern that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The pattern's text.
    pub pattern: String,
    /// What went wrong.
    pub kind: MismatchKind,
}

/// How a pattern failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MismatchKind {
    /// A positive pattern was not found (after the previous match).
    Missing,
    /// Found, but not on the line after the previous match.
    WrongLine { expected: usize, actual: usize },
    /// A negative pattern was found.
    Unexpected,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            MismatchKind::Missing => write!(f, "lacks `{}`", self.pattern),
            MismatchKind::WrongLine { expected, actual } => write!(
                f,
                "has `{}` on line {actual}, expected on line {expected}",
                self.pattern
            ),
            MismatchKind::Unexpected => write!(f, "has `{}`, expected absent", self.pattern),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Found {
    start: usize,
    end: usize,
    line: usize,
    hit: bool,
}

/// Checks `text` against `patterns` (`validate_msgs`); `Err` is the first failing pattern.
pub fn validate(text: &str, patterns: &[Pattern]) -> Result<(), Mismatch> {
    let mut found = vec![Found::default(); patterns.len()];
    // Positive patterns in order, each searched from the end of the previous match.
    let (mut cursor, mut prev_start, mut line) = (0, 0, 0);
    for (i, p) in patterns.iter().enumerate().filter(|(_, p)| !p.negative) {
        if let Some((s, e)) = p.find(&text[cursor..]) {
            let (start, end) = (cursor + s, cursor + e);
            line += text[prev_start..start].matches('\n').count();
            found[i] = Found {
                start,
                end,
                line,
                hit: true,
            };
            prev_start = start;
            cursor = end;
        }
    }
    // Negative patterns in the span between the positive matches around them. As in
    // test_loader.c, a run of negative patterns is searched with its first pattern, and a span
    // whose closing positive pattern did not match is empty.
    let mut start = 0;
    let mut i = 0;
    while i < patterns.len() {
        if !patterns[i].negative {
            if found[i].hit {
                start = found[i].end;
            }
            i += 1;
            continue;
        }
        let next_positive = (i + 1..patterns.len())
            .find(|&j| !patterns[j].negative)
            .unwrap_or(patterns.len());
        let end = match next_positive {
            n if n == patterns.len() => Some(text.len()),
            n => found[n].hit.then_some(found[n].start),
        };
        for slot in &mut found[i..next_positive] {
            if let (Some(end), Some((s, e))) = (end, patterns[i].find(&text[start..]))
                && start + e <= end
            {
                *slot = Found {
                    start: start + s,
                    end: start + e,
                    line: 0,
                    hit: true,
                };
            }
        }
        i = next_positive;
    }
    let mut prev: Option<Found> = None;
    for (p, f) in patterns.iter().zip(&found) {
        let kind = if !p.negative && !f.hit {
            Some(MismatchKind::Missing)
        } else if !p.negative
            && p.on_next_line
            && let Some(prev) = prev
            && prev.line + 1 != f.line
        {
            Some(MismatchKind::WrongLine {
                expected: prev.line + 1,
                actual: f.line,
            })
        } else if p.negative && f.hit {
            Some(MismatchKind::Unexpected)
        } else {
            None
        };
        if let Some(kind) = kind {
            return Err(Mismatch {
                pattern: format!("{} ({})", p.text, p.kind()),
                kind,
            });
        }
        if !p.negative {
            prev = Some(*f);
        }
    }
    Ok(())
}

/// `compile_regex`: verbatim text escaped, `{{…}}` parts kept, as one POSIX extended regex with
/// `REG_NEWLINE` (`.` and `[^…]` never match a newline, `^` and `$` match at line ends).
fn compile(pattern: &str) -> Result<Regex, String> {
    let mut out = String::new();
    let mut rest = pattern;
    let mut in_regex = false;
    let mut budget = REGEX_BUF - 2;
    while !rest.is_empty() && budget > 0 {
        if !in_regex && let Some(r) = rest.strip_prefix("{{") {
            in_regex = true;
            rest = r;
            continue;
        }
        if in_regex && let Some(r) = rest.strip_prefix("}}") {
            in_regex = false;
            rest = r;
            continue;
        }
        let c = rest.chars().next().expect("not empty");
        rest = &rest[c.len_utf8()..];
        if in_regex {
            out.push(c);
            budget = budget.saturating_sub(c.len_utf8());
        } else if ".[]\\()*+?{}|^$".contains(c) {
            out.push('\\');
            out.push(c);
            budget = budget.saturating_sub(2);
        } else {
            out.push(c);
            budget = budget.saturating_sub(c.len_utf8());
        }
    }
    if !rest.is_empty() {
        return Err(format!("regex too long: '{pattern}'"));
    }
    if in_regex {
        return Err(format!(
            "regex has an open '{{{{' but no closing '}}}}': '{pattern}'"
        ));
    }
    Regex::new(&format!("(?m){}", posix_newline(&out)))
        .map_err(|e| format!("regex `{out}` of '{pattern}' does not compile: {e}"))
}

/// A negated bracket expression that also refuses newlines (`REG_NEWLINE`).
fn posix_newline(re: &str) -> String {
    let mut out = String::with_capacity(re.len());
    let mut chars = re.chars().peekable();
    let mut escaped = false;
    while let Some(c) = chars.next() {
        out.push(c);
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '[' && chars.peek() == Some(&'^') {
            out.push(chars.next().expect("peeked"));
            out.push_str("\\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(texts: &[&str]) -> Vec<Pattern> {
        texts
            .iter()
            .map(|t| match t.strip_prefix('!') {
                Some(t) => Pattern::new(t, false, true).unwrap(),
                None => Pattern::new(t, false, false).unwrap(),
            })
            .collect()
    }

    const LOG: &str = "0: R1=ctx() R10=fp0\n1: (bf) r2 = r10\n2: (07) r2 += -8\n\
        R2 invalid mem access 'scalar'\nprocessed 3 insns\n";

    #[test]
    fn positives_match_in_order() {
        assert_eq!(validate(LOG, &msgs(&["r2 = r10", "invalid mem"])), Ok(()));
        let err = validate(LOG, &msgs(&["invalid mem", "r2 = r10"])).unwrap_err();
        assert_eq!(err.kind, MismatchKind::Missing);
        assert_eq!(err.pattern, "r2 = r10 (substring)");
    }

    #[test]
    fn regex_parts_and_escaping() {
        assert_eq!(validate(LOG, &msgs(&["r2 += -{{[0-9]+}}"])), Ok(()));
        // Verbatim `(` and `+` are escaped; `.` inside {{}} does not cross lines.
        assert_eq!(validate(LOG, &msgs(&["(07) r2 +={{.*}}"])), Ok(()));
        assert!(validate(LOG, &msgs(&["r10{{.*}}invalid"])).is_err());
        assert!(validate(LOG, &msgs(&["r10{{[^x]*}}invalid"])).is_err());
        assert!(Pattern::new("{{open", false, false).is_err());
    }

    #[test]
    fn negatives_are_checked_between_positive_matches() {
        assert_eq!(
            validate(LOG, &msgs(&["r2 = r10", "!R10", "invalid"])),
            Ok(())
        );
        let err = validate(LOG, &msgs(&["R1=ctx", "!r2 += -8", "invalid"])).unwrap_err();
        assert_eq!(err.kind, MismatchKind::Unexpected);
        // After the last positive match the span runs to the end.
        assert!(validate(LOG, &msgs(&["r2 = r10", "!processed"])).is_err());
    }

    #[test]
    fn disassembly_patterns_follow_line_by_line() {
        let text = "0: r1 = 1\n1: r2 = 2\n2: exit\n";
        let mut list = DisasmList::default();
        for p in ["r1 = 1", "r2 = 2"] {
            list.push(p).unwrap();
        }
        assert_eq!(validate(text, &list.patterns), Ok(()));
        let mut gap = DisasmList::default();
        for p in ["r1 = 1", "exit"] {
            gap.push(p).unwrap();
        }
        let err = validate(text, &gap.patterns).unwrap_err();
        assert_eq!(
            err.kind,
            MismatchKind::WrongLine {
                expected: 1,
                actual: 2
            }
        );
        let mut dots = DisasmList::default();
        for p in ["r1 = 1", "...", "exit"] {
            dots.push(p).unwrap();
        }
        assert_eq!(validate(text, &dots.patterns), Ok(()));
    }
}
