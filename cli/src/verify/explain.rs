//! `--explain`'s lines: what the filter's `decide_explained` reports, recorded as it is: each
//! passed check, then the failed one. Nothing here knows the filter's check order. Uses only
//! the filter's `Explain` observer.

use svcauth_filter::decide::{Check, Explain};

/// One line of `--explain`.
pub struct Line {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Records every check the filter reports.
#[derive(Default)]
pub struct Recorder {
    pub lines: Vec<Line>,
}

impl Recorder {
    /// The filter's detail of the failed check, if one failed.
    pub fn failure(&self) -> Option<&str> {
        self.lines.iter().find(|l| !l.ok).map(|l| l.detail.as_str())
    }
}

impl Explain for Recorder {
    fn pass(&mut self, check: Check, detail: impl FnOnce() -> String) {
        self.lines.push(Line {
            name: check.name(),
            ok: true,
            detail: detail(),
        });
    }

    fn fail(&mut self, check: Check, detail: impl FnOnce() -> String) {
        self.lines.push(Line {
            name: check.name(),
            ok: false,
            detail: detail(),
        });
    }
}
