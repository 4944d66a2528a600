//! Text wrapped to a terminal's width: a long line is broken at spaces, and its continuation
//! lines are indented under the line's text (under the text after a leading "- "). Colour
//! escapes take no column.

/// `text` with every line at most `width` columns wide, where spaces allow.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        wrap_line(body, width, &mut out);
        out.push_str(newline);
    }
    out
}

fn wrap_line(line: &str, width: usize, out: &mut String) {
    if columns(line) <= width {
        out.push_str(line);
        return;
    }
    let text = line.trim_start_matches(' ');
    let indent = line.len() - text.len();
    let hanging = indent + if text.starts_with("- ") { 2 } else { 4 };
    let mut used = indent;
    out.push_str(&line[..indent]);
    let mut first = true;
    for word in text.split(' ') {
        let needed = columns(word);
        if !first && used + 1 + needed > width {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', hanging));
            used = hanging;
        } else if !first {
            out.push(' ');
            used += 1;
        }
        out.push_str(word);
        used += needed;
        first = false;
    }
}

/// The columns `text` takes on a terminal: characters, without colour escapes (ESC [ … m).
fn columns(text: &str) -> usize {
    let mut count = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn long_lines_break_at_spaces_under_their_text() {
        let text = "short\n  - one two three four five six\n";
        assert_eq!(
            wrap(text, 17),
            "short\n  - one two three\n    four five six\n"
        );
        let wrapped = wrap("VERDICT: aaaa bbbb cccc dddd eeee", 15);
        assert!(wrapped.lines().all(|line| line.len() <= 15), "{wrapped}");
        assert_eq!(
            wrapped.replace("\n    ", " "),
            "VERDICT: aaaa bbbb cccc dddd eeee"
        );
    }

    #[test]
    fn colour_takes_no_column_and_a_long_word_stays_whole() {
        let red = "\x1b[1;31mVERDICT\x1b[0m ok";
        assert_eq!(wrap(red, 10), red);
        assert_eq!(wrap("abcdefghijkl", 5), "abcdefghijkl");
    }
}
