//! The README's quick start, run as written on a fresh lab: the commands are read out of the
//! fenced block after the `<!-- quick-start` marker. The only change is the name of the
//! namespace standing for the host (`tracer_lab` in the README, a unique one here), so that the
//! test never meets another lab and never touches the real root namespace.

use std::{path::Path, process::Output};

use tracer_tests::{TempDir, output, require_root, tracer, unique};

/// The README's name for the lab's stand-in host namespace, replaced by a unique one.
const README_ROOT: &str = "tracer_lab";

/// The quick-start commands, each split into words, `sudo` dropped.
fn quick_start() -> Vec<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    let block: Vec<&str> = readme
        .lines()
        .skip_while(|line| !line.starts_with("<!-- quick-start"))
        .skip_while(|line| !line.starts_with("```"))
        .skip(1)
        .take_while(|line| !line.starts_with("```"))
        .collect();
    assert!(!block.is_empty(), "README.md has no quick-start block");
    block
        .iter()
        .map(|line| {
            assert!(
                !line.contains(['"', '\'', '\\']),
                "quick-start lines are plain words: {line}"
            );
            let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            assert_eq!(words[..2], ["sudo", "tracer"], "{line}");
            words[2..].to_vec()
        })
        .collect()
}

/// `lab down` for the lab the quick start's `lab up` built; removes it even if the test fails.
struct LabGuard(Vec<String>);

impl Drop for LabGuard {
    fn drop(&mut self) {
        // Never panic here: this may run while a failed test unwinds.
        let _ = tracer().args(&self.0).output();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_readme_quick_start_works_as_written() {
    require_root();
    let root = unique("Q");
    let commands: Vec<Vec<String>> = quick_start()
        .into_iter()
        .map(|words| {
            words
                .into_iter()
                .map(|word| word.replace(README_ROOT, &root))
                .collect()
        })
        .collect();
    assert_eq!(commands.len(), 3, "three commands: {commands:?}");
    assert_eq!(commands[0][..2], ["lab", "up"], "the lab comes first");
    let mut down = commands[0].clone();
    down[1] = "down".to_owned();
    let _lab = LabGuard(down);
    // Run where a user would: a directory of their own, which watch must leave as it was.
    let cwd = TempDir::new("qsd");
    let run = |words: &[String]| -> Output {
        let out = output(tracer().args(words).current_dir(&cwd.path));
        assert_eq!(
            out.status.code(),
            Some(0),
            "tracer {}:\n{}\n{}",
            words.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    };

    let up = text(&run(&commands[0]).stdout);
    // lab up prints the very commands the README runs next.
    for next in &commands[1..] {
        let line = format!("tracer {}", next.join(" "));
        assert!(up.contains(&line), "lab up does not say `{line}`:\n{up}");
    }

    let diagnose = text(&run(&commands[1]).stdout);
    assert!(diagnose.contains("VERDICT: ok"), "{diagnose}");
    assert!(diagnose.contains(&format!("{root}/cvl_0_1")), "{diagnose}");

    let watch = run(&commands[2]);
    let (stdout, stderr) = (text(&watch.stdout), text(&watch.stderr));
    assert!(stdout.contains("3 received"), "ping's own output: {stdout}");
    assert!(stderr.contains("verdict ok"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&cwd.path)
        .expect("reading the working directory")
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect();
    assert!(left.is_empty(), "a passing watch left {left:?}");
}
