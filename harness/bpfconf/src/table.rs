//! The one Markdown table writer: every table the CLI prints (reports, comparisons, timings,
//! objects, known bugs, repeated runs, benchmarks) is a [`Table`], so a cell's `|` and line
//! breaks are escaped one way and no content breaks a table.

use std::fmt;

/// A Markdown table: headers, then rows of cells, each cell escaped by [`escape`].
#[derive(Clone, Debug)]
pub struct Table {
    headers: Vec<String>,
    /// The first column whose cells are right-aligned (numbers), if any.
    right_from: Option<usize>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<S: AsRef<str>>(headers: impl IntoIterator<Item = S>) -> Self {
        Table {
            headers: headers.into_iter().map(|h| escape(h.as_ref())).collect(),
            right_from: None,
            rows: Vec::new(),
        }
    }

    /// Right-aligns the columns from `first` on (`---:`).
    pub fn right_from(mut self, first: usize) -> Self {
        self.right_from = Some(first);
        self
    }

    /// Adds a row.
    pub fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows
            .push(cells.into_iter().map(|c| escape(c.as_ref())).collect());
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line =
            |f: &mut fmt::Formatter<'_>, cells: &[String]| writeln!(f, "| {} |", cells.join(" | "));
        line(f, &self.headers)?;
        f.write_str("|")?;
        for i in 0..self.headers.len() {
            let right = self.right_from.is_some_and(|first| i >= first);
            f.write_str(if right { "---:|" } else { "---|" })?;
        }
        f.write_str("\n")?;
        for row in &self.rows {
            line(f, row)?;
        }
        Ok(())
    }
}

/// `text` fit for a table cell: `|` escaped, each line break a `<br>`.
pub fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', "<br>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_break_the_table() {
        let mut t = Table::new(["case", "s"]).right_from(1);
        t.row(["a|b", "1.0"]);
        t.row(["two\nlines", ""]);
        assert_eq!(
            t.to_string(),
            "| case | s |\n|---|---:|\n| a\\|b | 1.0 |\n| two<br>lines |  |\n"
        );
    }
}
