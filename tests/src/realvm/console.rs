//! Reads the guest's serial console file, where `init` writes `snapgate-counter N`.

use std::path::Path;

use super::RealVmError;

const COUNTER_PREFIX: &str = "snapgate-counter ";

/// A position in the console file: counters printed after it are "new".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleMark(pub(crate) u64);

/// The whole console file (empty while the guest has printed nothing yet).
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, RealVmError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(RealVmError::io(format!(
            "reading console {}",
            path.display()
        ))(error)),
    }
}

/// Counter values in `bytes`, in order. Only complete lines count: the last line may still
/// be half written.
pub(crate) fn counters(bytes: &[u8]) -> Vec<u64> {
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => &bytes[..end],
        None => return Vec::new(),
    };
    String::from_utf8_lossy(complete)
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(COUNTER_PREFIX)? + COUNTER_PREFIX.len()..];
            rest.trim_end_matches('\r').trim().parse().ok()
        })
        .collect()
}

/// The last `n` lines, for failure messages.
pub(crate) fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_skip_noise_and_the_unfinished_last_line() {
        let console = b"[ 0.000] ACPI BIOS Error\r\nsnapgate-counter 1\r\nsnapgate-counter 2\r\nsnapgate-coun";
        assert_eq!(counters(console), vec![1, 2]);
    }

    #[test]
    fn counters_of_an_empty_console_are_empty() {
        assert!(counters(b"").is_empty());
        assert!(counters(b"snapgate-counter 7").is_empty());
    }
}
