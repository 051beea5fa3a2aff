//! Plain-text tables and durations for the terminal commands: columns as wide as their widest
//! cell, two spaces apart, no trailing blanks.

use std::fmt;

pub struct Table<const N: usize> {
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    pub fn new(head: [&str; N]) -> Table<N> {
        Table {
            rows: vec![head.map(str::to_owned)],
        }
    }

    pub fn row(&mut self, cells: [String; N]) {
        self.rows
            .push(cells.map(|c| c.replace(['\n', '\r', '\t'], " ")));
    }
}

impl<const N: usize> fmt::Display for Table<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut widths = [0; N];
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in &self.rows {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < N {
                    line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A span of milliseconds in its largest whole unit, then `suffix`: `42s ago`, `3m left`.
pub fn ago(ms: u64, suffix: &str) -> String {
    let s = ms / 1000;
    let amount = match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    };
    format!("{amount} {suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(["A", "LONGER"]);
        table.row(["wide cell".to_owned(), "x".to_owned()]);
        table.row(["b".to_owned(), "new\nline".to_owned()]);
        assert_eq!(
            table.to_string(),
            "A          LONGER\nwide cell  x\nb          new line\n"
        );
    }

    #[test]
    fn spans_read_in_their_largest_unit() {
        for (ms, expected) in [
            (0, "0s ago"),
            (59_999, "59s ago"),
            (60_000, "1m ago"),
            (3_599_999, "59m ago"),
            (3_600_000, "1h ago"),
            (86_400_000, "1d ago"),
        ] {
            assert_eq!(ago(ms, "ago"), expected, "{ms}");
        }
    }
}
