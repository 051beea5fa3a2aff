//! The results table: one row per scenario and system, printed as Markdown so the same text
//! reads well in a terminal and pastes into the README.

use std::fmt::Write as _;

/// How a row fares against its target.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// A reference row (a baseline, or a figure that is only reported).
    Reference,
    Met(String),
    Missed(String),
    /// Reported figure with a note, no target.
    Info(String),
    Failed(String),
    NotRun(String),
}

impl Verdict {
    /// `Met` when `ok`, else `Missed`, both with `detail`.
    pub fn judge(ok: bool, detail: String) -> Verdict {
        if ok {
            Verdict::Met(detail)
        } else {
            Verdict::Missed(detail)
        }
    }

    fn cell(&self) -> String {
        match self {
            Verdict::Reference => String::new(),
            Verdict::Met(d) => format!("met ({d})"),
            Verdict::Missed(d) => format!("**MISSED** ({d})"),
            Verdict::Info(d) => d.clone(),
            Verdict::Failed(_) => "**FAILED** (see below)".into(),
            Verdict::NotRun(_) => "not run (see below)".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    pub scenario: String,
    pub system: String,
    pub rps: Option<f64>,
    /// Rate against bare pingora serving the same file, median of per-round ratios.
    pub ratio: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub rss_kib: Option<u64>,
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    /// A row for a scenario that could not run here, with the reason.
    pub fn not_run(scenario: &str, system: &str, target: &str, why: &str) -> Row {
        let mut row = Row::new(scenario, system);
        row.target = target.into();
        row.verdict = Verdict::NotRun(why.into());
        row
    }

    pub fn new(scenario: &str, system: &str) -> Row {
        Row {
            scenario: scenario.into(),
            system: system.into(),
            rps: None,
            ratio: None,
            p50_ms: None,
            p99_ms: None,
            rss_kib: None,
            target: String::new(),
            verdict: Verdict::Reference,
        }
    }
}

/// `12345.6` → `12,346`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt(value: Option<f64>, show: impl Fn(f64) -> String) -> String {
    value.map(show).unwrap_or_else(|| "—".into())
}

/// The Markdown table, followed by the reasons of failed and skipped rows.
pub fn render(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "system",
        "req/s",
        "× bare pingora",
        "p50",
        "p99",
        "RSS",
        "target",
        "result",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.clone(),
                r.system.clone(),
                opt(r.rps, thousands),
                opt(r.ratio, |v| format!("{v:.2}×")),
                opt(r.p50_ms, |v| format!("{v:.2} ms")),
                opt(r.p99_ms, |v| format!("{v:.2} ms")),
                opt(r.rss_kib.map(|k| k as f64 / 1024.0), |v| {
                    format!("{v:.0} MB")
                }),
                r.target.clone(),
                r.verdict.cell(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut s = String::from("|");
        for (c, w) in cols.iter().zip(widths) {
            let pad = w - c.chars().count();
            let _ = write!(s, " {c}{} |", " ".repeat(pad));
        }
        s.push('\n');
        s
    };
    let mut out = line(&header.map(String::from));
    out.push_str(&line(&widths.map(|w| "-".repeat(w))));
    for row in &cells {
        out.push_str(&line(row));
    }
    let notes: Vec<String> = rows
        .iter()
        .filter_map(|r| match &r.verdict {
            Verdict::Failed(why) => Some(format!("- FAILED {} / {}: {why}", r.scenario, r.system)),
            Verdict::NotRun(why) => Some(format!("- not run {} / {}: {why}", r.scenario, r.system)),
            _ => None,
        })
        .collect();
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes.join("\n"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
    }

    #[test]
    fn table_aligns_columns_and_lists_failures_below() {
        let mut ok = Row::new("pass-through", "latch");
        ok.rps = Some(12000.0);
        ok.ratio = Some(0.97);
        ok.target = "≥ 0.95×".into();
        ok.verdict = Verdict::judge(true, "0.97×".into());
        let mut bad = Row::new("held, Redis", "latch");
        bad.verdict = Verdict::Failed("3 of 9 responses were not 200".into());
        let text = render(&[ok, bad]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].contains("| 12,000 ") && lines[2].contains("| 0.97× "));
        assert!(lines[2].contains("met (0.97×)"));
        assert_eq!(lines[0].chars().count(), lines[3].chars().count());
        assert!(text.contains("- FAILED held, Redis / latch: 3 of 9 responses were not 200"));
    }
}
