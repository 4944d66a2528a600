//! The running test's name, from the tag file SPDK's `run_test` writes before each test (and
//! then signals its resource monitors with SIGUSR1).

use std::{io::Read as _, path::Path};

/// Longest name kept: the file is anyone's to write, the name goes into a label.
const MAX_NAME: usize = 256;

/// The name in `path`: its first line, trimmed, control characters dropped, at most
/// [`MAX_NAME`] bytes; none when the file is missing or holds no name.
pub fn read(path: &Path) -> Option<String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) => {
            log::debug!("test tag file {}: {err}", path.display());
            return None;
        }
    };
    let mut bytes = Vec::new();
    // Only the head is read: a huge file costs nothing.
    file.take(MAX_NAME as u64 * 4)
        .read_to_end(&mut bytes)
        .ok()?;
    name(&String::from_utf8_lossy(&bytes))
}

fn name(text: &str) -> Option<String> {
    let line: String = text
        .lines()
        .next()?
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let mut end = line.len().min(MAX_NAME);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let line = &line[..end];
    (!line.is_empty()).then(|| line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::name;

    #[test]
    fn the_first_line_trimmed_and_bounded() {
        assert_eq!(name("nvmf_tcp\n").as_deref(), Some("nvmf_tcp"));
        assert_eq!(
            name("  nvmf_timeout \nrest").as_deref(),
            Some("nvmf_timeout")
        );
        assert_eq!(name("\n"), None);
        assert_eq!(name(""), None);
        assert_eq!(name("a\u{7}b").as_deref(), Some("ab"));
        assert_eq!(name(&"é".repeat(300)).map(|n| n.len()), Some(256));
    }
}
