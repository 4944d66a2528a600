//! `tracer triage DIR...`: find the bundles in directories (searched recursively) and in
//! .tar.gz archives of bundles, group them by signature, and print the groups; bundles that do
//! not read are listed with the reason.
//!
//! Archives may come from anywhere: they are read in memory, never extracted. Only members
//! named report.json are read (at most [`REPORT_LIMIT`] bytes each), and the decompressed
//! stream is cut at [`ARCHIVE_LIMIT`]: no member is ever written to disk, so no member's path
//! can point outside anything.

use std::{
    fs::File,
    io::Read as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use tracer_evidence::{
    SavedReportError,
    triage::{BundleSummary, Triage, Unreadable, group, summarize},
};

use crate::{bundle, cli::TriageArgs, error::UsageError, output, render};

/// A report.json larger than this is not read.
const REPORT_LIMIT: u64 = 64 << 20;
/// Decompressed bytes read from one archive at most.
const ARCHIVE_LIMIT: u64 = 4 << 30;
/// Directories deeper than this below a DIR are not searched.
const DEPTH_LIMIT: usize = 32;

/// Bundles found so far, and those that could not be read.
#[derive(Default)]
struct Found {
    bundles: Vec<BundleSummary>,
    unreadable: Vec<Unreadable>,
}

impl Found {
    fn add(&mut self, location: String, report_html: Option<String>, text: &str) {
        match summarize(location.clone(), report_html, text) {
            Ok(bundle) => self.bundles.push(bundle),
            Err(err) => self.unreadable.push(Unreadable::new(location, &err)),
        }
    }

    fn unreadable(&mut self, location: String, reason: String) {
        self.unreadable.push(Unreadable::new(
            location,
            &SavedReportError::Unreadable(reason),
        ));
    }
}

fn is_archive(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// Reads at most `limit` bytes of `reader` as text; None when there is more.
fn bounded_text(reader: impl std::io::Read, limit: u64) -> std::io::Result<Option<String>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

fn read_report(found: &mut Found, report: &Path) {
    let bundle = report.parent().unwrap_or(Path::new("."));
    let location = bundle.display().to_string();
    let html = bundle.join("report.html");
    // Absolute, for the page's links.
    let report_html = html
        .symlink_metadata()
        .is_ok_and(|meta| meta.is_file())
        .then(|| std::fs::canonicalize(&html).ok())
        .flatten()
        .map(|path| path.display().to_string());
    match File::open(report).and_then(|file| bounded_text(file, REPORT_LIMIT)) {
        Ok(Some(text)) => found.add(location, report_html, &text),
        Ok(None) => found.unreadable(
            location,
            format!("report.json is over {REPORT_LIMIT} bytes"),
        ),
        Err(err) => found.unreadable(location, format!("report.json cannot be read: {err}")),
    }
}

/// Every bundle under `dir`: directories holding a report.json, and archives. Symbolic links
/// are not followed (a link to a parent would never end).
fn search(found: &mut Found, dir: &Path, depth: usize) {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|entry| Some(entry.ok()?.path()))
            .collect(),
        Err(err) => {
            found.unreadable(
                dir.display().to_string(),
                format!("cannot be listed: {err}"),
            );
            return;
        }
    };
    entries.sort();
    for path in entries {
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            if depth < DEPTH_LIMIT {
                search(found, &path, depth + 1);
            } else {
                found.unreadable(
                    path.display().to_string(),
                    format!("deeper than {DEPTH_LIMIT} directories: not searched"),
                );
            }
        } else if meta.is_file() && path.file_name().is_some_and(|n| n == "report.json") {
            read_report(found, &path);
        } else if meta.is_file() && is_archive(&path) {
            read_archive(found, &path);
        }
    }
}

/// The bundles in a .tar.gz: each member named report.json, read in memory.
fn read_archive(found: &mut Found, archive: &Path) {
    let before = found.bundles.len() + found.unreadable.len();
    if let Err(err) = archive_members(found, archive) {
        found.unreadable(archive.display().to_string(), format!("archive: {err:#}"));
    } else if found.bundles.len() + found.unreadable.len() == before {
        found.unreadable(
            archive.display().to_string(),
            "archive holds no report.json".to_owned(),
        );
    }
}

fn archive_members(found: &mut Found, archive: &Path) -> anyhow::Result<()> {
    let file = File::open(archive).context("opening")?;
    let stream = flate2::read::GzDecoder::new(file).take(ARCHIVE_LIMIT);
    let mut tar = tar::Archive::new(stream);
    for entry in tar.entries().context("reading its members")? {
        let entry = entry.context("reading a member")?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let member = entry.path().context("a member's name")?.into_owned();
        if member.file_name().is_none_or(|name| name != "report.json") {
            continue;
        }
        let bundle = member.parent().unwrap_or(Path::new(""));
        let location = format!("{}:{}", archive.display(), bundle.display());
        match bounded_text(entry, REPORT_LIMIT) {
            Ok(Some(text)) => found.add(location, None, &text),
            Ok(None) => {
                found.unreadable(
                    location,
                    format!("report.json is over {REPORT_LIMIT} bytes"),
                );
            }
            Err(err) => found.unreadable(location, format!("report.json cannot be read: {err}")),
        }
    }
    Ok(())
}

/// Finds, reads and groups the bundles under `paths`.
pub fn triage(paths: &[PathBuf]) -> Triage {
    let mut found = Found::default();
    for path in paths {
        if path.is_dir() {
            search(&mut found, path, 0);
        } else if is_archive(path) {
            read_archive(&mut found, path);
        } else if path.file_name().is_some_and(|n| n == "report.json") {
            read_report(&mut found, path);
        } else {
            found.unreadable(
                path.display().to_string(),
                "not a directory, a .tar.gz or a report.json".to_owned(),
            );
        }
    }
    Triage {
        bundles: found.bundles.len(),
        groups: group(found.bundles),
        unreadable: found.unreadable,
    }
}

pub fn run(args: &TriageArgs) -> anyhow::Result<u8> {
    if let Some(missing) = args.paths.iter().find(|path| !path.exists()) {
        return Err(UsageError::Argument(format!("{} does not exist", missing.display())).into());
    }
    let found = triage(&args.paths);
    if args.json {
        output::print_line(&serde_json::to_string(&found)?)?;
    } else {
        output::print(&render::triage::text(&found))?;
    }
    if let Some(file) = &args.html {
        let base = file.parent().filter(|p| !p.as_os_str().is_empty());
        let base = std::fs::canonicalize(base.unwrap_or(Path::new(".")))
            .with_context(|| format!("finding the directory of {}", file.display()))?;
        let page = render::triage::page(&found, &base);
        bundle::write_file(file, page.as_bytes())?;
    }
    Ok(0)
}
