//! Progress bars on stderr: shown on a terminal, hidden with `--quiet` or when piped; and the
//! notes that come with a piece of work (printed unless `--quiet`).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    visible: bool,
    notes: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Self { visible: !quiet && std::io::stderr().is_terminal(), notes: !quiet }
    }

    /// No bars and no notes: for work inside a larger one that reports for itself.
    pub fn hidden() -> Self {
        Self { visible: false, notes: false }
    }

    pub fn is_visible(&self) -> bool {
        self.visible
    }

    /// The same bars, without notes: for work made of parts whose notes could not say which
    /// part they belong to (`eval`'s tasks).
    pub fn without_notes(self) -> Self {
        Self { notes: false, ..self }
    }

    /// `note: {text}` on stderr, unless quiet or hidden.
    pub fn note(&self, text: &str) {
        if self.notes {
            crate::stderrln!("note: {text}");
        }
    }

    /// A bar counting `unit`s up to `len`, with rate and time left.
    pub fn bar(&self, len: u64, unit: &str) -> ProgressBar {
        if !self.visible {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let template = format!("{{bar:30}} {{pos}}/{{len}} {unit} {{rate}} eta {{eta}} {{msg}}");
        let style = ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}", rate(state.per_sec()));
        }));
        bar
    }
}

/// A rate rounded for reading: whole numbers from 100, three digits below (indicatif's
/// `{per_sec}` shows four decimals).
fn rate(per_sec: f64) -> String {
    match per_sec {
        r if r >= 100.0 => format!("{r:.0}/s"),
        r if r >= 10.0 => format!("{r:.1}/s"),
        r => format!("{r:.2}/s"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_are_whole_from_100_and_keep_three_digits_below() {
        let shown: Vec<String> = [1234.5678, 56.789, 3.25159, 0.0].into_iter().map(super::rate).collect();
        assert_eq!(shown, ["1235/s", "56.8/s", "3.25/s", "0.00/s"]);
    }
}
