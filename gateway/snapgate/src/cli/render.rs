//! Terminal output: a spinner with elapsed time while waiting, and plain tables.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use serde_json::Value;

pub struct Spinner {
    enabled: bool,
    started: Instant,
    frame: usize,
    label: String,
}

impl Spinner {
    /// Draws on stderr only when it is a terminal, so pipes and logs stay clean.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            started: Instant::now(),
            frame: 0,
            label: label.into(),
        }
    }

    pub fn tick(&mut self, status: &str) {
        if !self.enabled {
            return;
        }
        const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
        self.frame = (self.frame + 1) % FRAMES.len();
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r{} {} ({status}) {:.1}s   ",
            FRAMES[self.frame],
            self.label,
            self.started.elapsed().as_secs_f64()
        );
        let _ = err.flush();
    }

    pub fn finish(&self) {
        if self.enabled {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// A table of rows, columns padded to the widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.clone()));
    }
    out
}

pub fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

pub fn human_bytes(v: &Value) -> String {
    match v.as_i64() {
        None => "-".into(),
        Some(n) => {
            let units = ["B", "KiB", "MiB", "GiB", "TiB"];
            let mut value = n as f64;
            let mut unit = 0;
            while value >= 1024.0 && unit < units.len() - 1 {
                value /= 1024.0;
                unit += 1;
            }
            if unit == 0 {
                format!("{n} B")
            } else {
                format!("{value:.1} {}", units[unit])
            }
        }
    }
}
