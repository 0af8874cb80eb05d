//! Tables for `--output table` (comfy-table, borderless: columns two spaces apart, so the
//! output reads like `ls -l` and `awk` still splits it), and the small cell formats they use.

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::Table;

/// A table with a header row; columns as wide as their widest cell.
pub fn table(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(headers.to_vec());
    t.add_rows(rows);
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    t.trim_fmt()
}

/// One record as `FIELD  VALUE` rows (the `show` commands).
pub fn fields(rows: Vec<(&str, String)>) -> String {
    table(
        &["FIELD", "VALUE"],
        rows.into_iter().map(|(k, v)| vec![k.to_owned(), v]),
    )
}

/// `-` for what the record does not have.
pub fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn human_bytes(n: Option<i64>) -> String {
    let Some(n) = n else {
        return "-".into();
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_starts_with_its_header_and_aligns_columns() {
        let out = table(
            &["UUID", "NAME"],
            [
                vec!["a".to_owned(), "first".to_owned()],
                vec!["long-id".to_owned(), "x".to_owned()],
            ],
        );
        assert_eq!(out, "UUID     NAME\na        first\nlong-id  x");
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_bytes(Some(512)), "512 B");
        assert_eq!(human_bytes(Some(3 * 1024 * 1024 / 2)), "1.5 MiB");
        assert_eq!(human_bytes(None), "-");
    }
}
