//! report.md within GitHub's limit for an issue or comment body (65,536 characters): the
//! longest tables and lists lose their last rows, each with a note saying how many, and the
//! verdict at the top is never cut.

/// GitHub's limit on an issue body, in characters.
pub const ISSUE_BODY_LIMIT: usize = 65_536;

/// Room kept for the notes and for what is not a table or list.
const NOTE_ROOM: usize = 200;

/// A run of table rows (after a table's header and separator) or of list items.
struct Block {
    /// Index of its first and one past its last line.
    start: usize,
    end: usize,
    /// Lines kept from `start`.
    kept: usize,
}

fn is_table_row(line: &str) -> bool {
    line.starts_with('|')
}

fn is_list_item(line: &str) -> bool {
    line.starts_with("- ")
}

/// The cuttable blocks: table bodies and lists of more than one line.
fn blocks(lines: &[&str]) -> Vec<Block> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        let kind: Option<fn(&str) -> bool> = if is_table_row(lines[at]) {
            Some(is_table_row)
        } else if is_list_item(lines[at]) {
            Some(is_list_item)
        } else {
            None
        };
        let Some(same) = kind else {
            at += 1;
            continue;
        };
        let mut end = at;
        while end < lines.len() && same(lines[end]) {
            end += 1;
        }
        // A table keeps its header and separator line.
        let start = if is_table_row(lines[at]) {
            (at + 2).min(end)
        } else {
            at
        };
        if end - start > 1 {
            found.push(Block {
                start,
                end,
                kept: end - start,
            });
        }
        at = end;
    }
    found
}

fn length(lines: &[&str]) -> usize {
    lines.iter().map(|line| line.chars().count() + 1).sum()
}

/// `markdown` as it is when it fits `limit` characters, else with the longest blocks cut.
pub fn fit(markdown: &str, limit: usize) -> String {
    if markdown.chars().count() <= limit {
        return markdown.to_owned();
    }
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = blocks(&lines);
    let mut excess =
        (markdown.chars().count() + NOTE_ROOM * (blocks.len() + 1)).saturating_sub(limit);
    // Cut the largest block's last row until enough is gone: long tables shrink first.
    while excess > 0 {
        let Some(largest) = blocks
            .iter_mut()
            .filter(|block| block.kept > 1)
            .max_by_key(|block| length(&lines[block.start..block.start + block.kept]))
        else {
            break;
        };
        largest.kept -= 1;
        let removed = lines[largest.start + largest.kept].chars().count() + 1;
        excess = excess.saturating_sub(removed);
    }
    let mut out = String::with_capacity(limit);
    let mut at = 0;
    for block in &blocks {
        for line in &lines[at..block.start + block.kept] {
            out.push_str(line);
            out.push('\n');
        }
        let cut = block.end - block.start - block.kept;
        if cut > 0 {
            out.push_str(&format!(
                "\n_{cut} more rows not shown (GitHub's limit on a body): report.html and \
                 report.json have them all._\n\n"
            ));
        }
        at = block.end;
    }
    for line in &lines[at..] {
        out.push_str(line);
        out.push('\n');
    }
    if out.chars().count() > limit {
        // What is not a table or a list is too long alone: cut at the end.
        let note = "\n\n_Cut here (GitHub's limit on a body): report.html has it all._\n";
        out = out
            .chars()
            .take(limit - note.chars().count())
            .collect::<String>();
        out.push_str(note);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_report_is_left_alone() {
        let text = "# verdict\n\n| a |\n|---|\n| 1 |\n";
        assert_eq!(fit(text, 1000), text);
    }

    #[test]
    fn long_tables_lose_rows_with_a_note_and_the_top_stays() {
        let mut text = "# tracer diagnose: netfilter\n\n**dropped**\n\n- one\n- two\n\n".to_owned();
        text.push_str("| time | event |\n|---|---|\n");
        for i in 0..5000 {
            text.push_str(&format!("| +{i}.000s | something happened on the port |\n"));
        }
        text.push_str("\n## Capture\n\nthe end\n");
        let fitted = fit(&text, 10_000);
        assert!(fitted.chars().count() <= 10_000, "{}", fitted.len());
        assert!(
            fitted.starts_with("# tracer diagnose: netfilter\n\n**dropped**\n\n- one\n- two\n")
        );
        assert!(fitted.contains("| +0.000s |"));
        assert!(fitted.contains("more rows not shown"));
        assert!(fitted.ends_with("## Capture\n\nthe end\n"));
        let kept = fitted.lines().filter(|l| l.starts_with("| +")).count();
        let note: usize = fitted
            .lines()
            .find(|l| l.contains("more rows not shown"))
            .and_then(|l| l.trim_start_matches('_').split(' ').next()?.parse().ok())
            .unwrap();
        assert_eq!(kept + note, 5000);
    }

    #[test]
    fn text_without_tables_is_cut_at_the_end() {
        let text = "x".repeat(500);
        let fitted = fit(&text, 300);
        assert!(fitted.chars().count() <= 300);
        assert!(fitted.contains("Cut here"));
    }
}
