//! The one table a run prints: a row per measure, the floor and the peer beside keyward, the ratio, the
//! target and whether it was met.

use std::fmt::Write as _;
use std::time::Duration;

/// Whether a row met its target.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Met, with the deciding figure.
    Met(String),
    /// Missed, with the deciding figure.
    Missed(String),
    /// No target: a figure to read.
    Info,
    /// Not measured, and why.
    Skipped(String),
}

impl Verdict {
    /// Met when `ok`, else missed; `figure` says by how much either way.
    pub fn check(ok: bool, figure: impl Into<String>) -> Verdict {
        if ok {
            Verdict::Met(figure.into())
        } else {
            Verdict::Missed(figure.into())
        }
    }

    fn cell(&self) -> String {
        match self {
            Verdict::Met(figure) => format!("met ({figure})"),
            Verdict::Missed(figure) => format!("**MISSED** ({figure})"),
            Verdict::Info => "—".to_owned(),
            Verdict::Skipped(why) => format!("skipped: {why}"),
        }
    }
}

/// One row of the table. Empty cells print as `—`.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub scenario: String,
    pub measure: String,
    pub raw: String,
    pub floor: String,
    pub keyward: String,
    pub redis: String,
    pub vs_floor: String,
    pub vs_redis: String,
    pub target: String,
    pub verdict: Option<Verdict>,
}

/// The rows so far and the notes that go under the table.
#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn row(&mut self, row: Row) {
        eprintln!("keyward-bench: {} | {} | keyward {} | floor {}", row.scenario, row.measure, row.keyward, row.floor);
        self.rows.push(row);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("keyward-bench: note: {note}");
        self.notes.push(note);
    }

    /// The markdown table and its notes.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "| Scenario | Measure | Echo, raw socket | Floor: echo via pooled client | keyward | Redis EVALSHA \
             | keyward ÷ floor | keyward ÷ Redis | Target | Verdict |\n",
        );
        out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---|---|\n");
        let dash = |cell: &str| if cell.is_empty() { "—".to_owned() } else { cell.replace('|', "\\|") };
        for row in &self.rows {
            let verdict = row.verdict.as_ref().unwrap_or(&Verdict::Info).cell();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                dash(&row.scenario),
                dash(&row.measure),
                dash(&row.raw),
                dash(&row.floor),
                dash(&row.keyward),
                dash(&row.redis),
                dash(&row.vs_floor),
                dash(&row.vs_redis),
                dash(&row.target),
                verdict,
            );
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

/// A latency for a table cell: µs with one decimal below 100 µs, whole µs below 10 ms, ms above.
pub fn latency(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 100.0 {
        format!("{micros:.1} µs")
    } else if micros < 10_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 10_000_000.0 {
        format!("{:.1} ms", micros / 1000.0)
    } else {
        format!("{:.1} s", micros / 1e6)
    }
}

/// Three latencies as `a / b / c` with one unit where they share it.
pub fn latencies(values: &[Duration]) -> String {
    values.iter().map(|d| latency(*d)).collect::<Vec<_>>().join(" / ")
}

/// A rate for a table cell: `123.4k/s`.
pub fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M/s", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1}k/s", per_second / 1e3)
    } else {
        format!("{per_second:.1}/s")
    }
}

/// `a / b` as `1.23×`.
pub fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 || !a.is_finite() || !b.is_finite() {
        return "n/a".to_owned();
    }
    format!("{:.2}×", a / b)
}

/// A duration for prose and cells: `1.23 s`, `45 ms`.
pub fn span(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_readable() {
        assert_eq!(latency(Duration::from_nanos(21_340)), "21.3 µs");
        assert_eq!(latency(Duration::from_micros(450)), "450 µs");
        assert_eq!(latency(Duration::from_micros(15_250)), "15.2 ms");
        assert_eq!(rate(123_456.0), "123.5k/s");
        assert_eq!(rate(2_500_000.0), "2.50M/s");
        assert_eq!(ratio(3.0, 2.0), "1.50×");
        assert_eq!(ratio(1.0, 0.0), "n/a");
    }

    #[test]
    fn the_table_has_one_line_per_row_and_escapes_pipes() {
        let mut report = Report::default();
        report.rows.push(Row { scenario: "a|b".into(), verdict: Some(Verdict::check(false, "2×")), ..Row::default() });
        let table = report.markdown();
        assert_eq!(table.lines().count(), 3);
        assert!(table.contains("a\\|b"));
        assert!(table.contains("**MISSED** (2×)"));
    }
}
