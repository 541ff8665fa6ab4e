//! The fleet report: a section per part, a row per figure with its target and whether it was met.

use std::fmt::Write as _;
use std::time::Duration;

/// Whether a figure met its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    NotMet,
    /// A figure to read, without a target.
    Info,
}

impl Verdict {
    pub fn check(ok: bool) -> Verdict {
        if ok {
            Verdict::Met
        } else {
            Verdict::NotMet
        }
    }

    fn cell(&self) -> String {
        match self {
            Verdict::Met => "met".to_owned(),
            Verdict::NotMet => "**not met**".to_owned(),
            Verdict::Info => "—".to_owned(),
        }
    }
}

/// One row.
#[derive(Clone, Debug)]
pub struct Figure {
    pub measure: String,
    pub measured: String,
    pub target: String,
    pub verdict: Verdict,
}

/// One part of the run.
#[derive(Clone, Debug, Default)]
pub struct Section {
    pub title: String,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(title: &str) -> Section {
        Section { title: title.to_owned(), ..Section::default() }
    }

    /// A figure with a target.
    pub fn target(&mut self, measure: impl Into<String>, measured: impl Into<String>, target: &str, ok: bool) {
        self.figures.push(Figure {
            measure: measure.into(),
            measured: measured.into(),
            target: target.to_owned(),
            verdict: Verdict::check(ok),
        });
    }

    /// A figure without one.
    pub fn info(&mut self, measure: impl Into<String>, measured: impl Into<String>) {
        self.figures.push(Figure {
            measure: measure.into(),
            measured: measured.into(),
            target: String::new(),
            verdict: Verdict::Info,
        });
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        if !self.figures.is_empty() {
            out.push_str("| Measure | Measured | Target | Verdict |\n|---|---|---|---|\n");
            for figure in &self.figures {
                let cells = [&figure.measure, &figure.measured, &figure.target, &figure.verdict.cell()].map(|cell| {
                    if cell.is_empty() {
                        "—".to_owned()
                    } else {
                        cell.replace('|', "\\|")
                    }
                });
                let _ = writeln!(out, "| {} |", cells.join(" | "));
            }
            out.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }
}

/// A duration for a cell: `850 µs`, `12.3 ms`, `1.23 s`.
pub fn ms(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.1} ms", micros / 1000.0)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_prints_its_rows_and_notes() {
        let mut section = Section::new("1. Part");
        section.target("p50", ms(Duration::from_micros(2500)), "≤ 10 ms", true);
        section.info("a|b", "");
        section.note("n");
        let text = section.markdown();
        assert!(text.contains("| p50 | 2.5 ms | ≤ 10 ms | met |"), "{text}");
        assert!(text.contains("| a\\|b | — | — | — |"), "{text}");
        assert!(text.ends_with("- n\n\n"), "{text}");
    }
}
