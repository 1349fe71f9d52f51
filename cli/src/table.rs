//! Aligned plain-text tables, the output of `poolHealth` and `listPools`. People read them and
//! scripts split them on whitespace, so the exact bytes are part of the interface and tested.

/// `text` with every control character escaped (`\x1b`, `\n`, `\u{85}`), so that what lb or
/// anyone else put in a name cannot move the cursor, recolour the terminal or fake a line.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

/// Lays out `rows` (the first one is the header) in left-aligned columns, each as wide as its
/// widest cell plus two spaces; cells are [`escape`]d first. The last column is not padded and no line ends in spaces, so the
/// output diffs cleanly.
pub fn table<R: AsRef<[S]>, S: AsRef<str>>(rows: &[R]) -> String {
    let rows: Vec<Vec<std::borrow::Cow<'_, str>>> =
        rows.iter().map(|row| row.as_ref().iter().map(|cell| escape(cell.as_ref())).collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        for (column, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(column) {
                Some(widest) => *widest = (*widest).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(&format!("{:<pad$}", cell, pad = width + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{escape, table};

    #[test]
    fn pool_health_tables_have_the_documented_shape() {
        let pool = table(&[["Pool", "Status"], ["/", "PS_FULL"]]);
        let backends = table(&[["Backend", "Status"], ["127.0.0.1:8082", "BS_HEALTHY"]]);
        assert_eq!(
            pool + &backends,
            "Pool  Status\n\
             /     PS_FULL\n\
             Backend         Status\n\
             127.0.0.1:8082  BS_HEALTHY\n"
        );
    }

    #[test]
    fn a_header_alone_is_padded_to_itself() {
        assert_eq!(table(&[["Backend", "Status"]]), "Backend  Status\n");
    }

    #[test]
    fn every_column_but_the_last_takes_its_widest_cell_plus_two() {
        let rows = [
            ["Pattern", "Mode", "Strategy", "Backends", "Status"],
            ["/", "proxy", "p2c", "2", "PS_FULL"],
            ["/api/", "redirect", "round_robin", "0", "PS_UNAVAILABLE"],
        ];
        assert_eq!(
            table(&rows),
            "Pattern  Mode      Strategy     Backends  Status\n\
             /        proxy     p2c          2         PS_FULL\n\
             /api/    redirect  round_robin  0         PS_UNAVAILABLE\n"
        );
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        assert_eq!(table(&[["é", "x"], ["ab", "y"]]), "é   x\nab  y\n");
    }

    #[test]
    fn an_empty_last_cell_leaves_no_trailing_spaces() {
        assert_eq!(table(&[["A", "B"], ["a", ""]]), "A  B\na\n");
    }

    #[test]
    fn control_characters_are_escaped_and_counted_as_printed() {
        assert_eq!(
            table(&[["Pattern", "Status"], ["/a\x1b[31m", "PS_FULL"], ["/b\r\nX", "PS_EMPTY"]]),
            "Pattern     Status\n/a\\x1b[31m  PS_FULL\n/b\\r\\nX     PS_EMPTY\n"
        );
        assert_eq!(escape("/\0\u{85}\t"), "/\\x00\\u{85}\\t");
        assert_eq!(escape("/é"), "/é");
    }

    #[test]
    fn no_rows_is_no_output() {
        assert_eq!(table::<[&str; 0], &str>(&[]), "");
    }
}
