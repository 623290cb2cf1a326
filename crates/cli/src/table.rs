//! A small port of Go's text/tabwriter as docker/cli configures it
//! (`tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`): minwidth 10, padding 3.

const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// Aligns tab-separated cells. Text after the last tab of a line is not a column
/// cell and is printed as is (Go's tabwriter semantics), so rows end without
/// trailing spaces.
pub fn tabwrite(text: &str) -> String {
    tabwrite_min(text, MIN_WIDTH)
}

/// Like [`tabwrite`] with another minimum cell width (`docker top` uses 20).
pub fn tabwrite_min(text: &str, min_width: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::with_capacity(text.len() * 2);
    // Go's column blocks: a column's width is computed over consecutive lines that
    // have that column as a tab-terminated cell.
    let mut widths_per_line: Vec<Vec<usize>> = lines.iter().map(|c| vec![0; c.len()]).collect();
    let max_cols = lines.iter().map(|c| c.len()).max().unwrap_or(0);
    for col in 0..max_cols {
        let mut start = 0;
        while start < lines.len() {
            if lines[start].len() <= col + 1 {
                start += 1;
                continue;
            }
            let mut end = start;
            let mut width = 0;
            while end < lines.len() && lines[end].len() > col + 1 {
                width = width.max(lines[end][col].chars().count() + PADDING);
                end += 1;
            }
            let width = width.max(min_width);
            for w in widths_per_line.iter_mut().take(end).skip(start) {
                w[col] = width;
            }
            start = end;
        }
    }
    for (i, cells) in lines.iter().enumerate() {
        for (j, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < cells.len() {
                let pad = widths_per_line[i][j].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_like_go_tabwriter() {
        let t = "CONTAINER ID\tIMAGE\tNAMES\nabc\tbusybox\tx\n";
        assert_eq!(
            tabwrite(t),
            "CONTAINER ID   IMAGE     NAMES\nabc            busybox   x\n"
        );
    }

    #[test]
    fn lines_without_tabs_pass_through() {
        assert_eq!(tabwrite("plain\n"), "plain\n");
        assert_eq!(
            tabwrite("a\tb\nplain\nc\td\n"),
            "a         b\nplain\nc         d\n"
        );
    }
}
