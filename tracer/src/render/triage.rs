//! `tracer triage` as text and as one HTML page (the same table, each bundle linked to its
//! report.html). Static like report.html: no script, nothing fetched, every text escaped.

use std::{fmt::Write as _, path::Path};

use tracer_evidence::triage::{Group, Triage};

use crate::render::svg::escape;

fn joined(set: &std::collections::BTreeSet<String>, none: &str) -> String {
    if set.is_empty() {
        none.to_owned()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn seen(group: &Group) -> String {
    match (&group.first_seen, &group.last_seen) {
        (Some(first), Some(last)) => format!("{first} .. {last}"),
        _ => "not recorded".to_owned(),
    }
}

/// The groups, largest first, then the bundles that did not read.
pub fn text(triage: &Triage) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} bundles in {} groups; {} not readable",
        triage.bundles,
        triage.groups.len(),
        triage.unreadable.len()
    );
    for group in &triage.groups {
        let _ = writeln!(
            out,
            "\n{:>5}  {} ({})\n       {}\n       seen: {}\n       hosts: {}\n       kernels: {}\n       tests: {}\n       example: {}",
            group.count,
            group.signature,
            group.class,
            group.summary,
            seen(group),
            joined(&group.hosts, "-"),
            joined(&group.kernels, "-"),
            joined(&group.tests, "not named"),
            group.example
        );
    }
    if !triage.unreadable.is_empty() {
        let _ = writeln!(out, "\nNot readable:");
        for unreadable in &triage.unreadable {
            let _ = writeln!(out, "  {}: {}", unreadable.location, unreadable.reason);
        }
    }
    out
}

/// A path as a URL path: the characters a URL or HTML gives a meaning to, percent-encoded.
fn url_path(path: &str) -> String {
    let mut out = String::new();
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// A link to `report_html` (an absolute path): relative when it is below `base`, where the page
/// is written, so that the page and the bundles can move together.
fn href(report_html: &str, base: &Path) -> String {
    match Path::new(report_html).strip_prefix(base) {
        Ok(relative) => url_path(&relative.to_string_lossy()),
        Err(_) => format!("file://{}", url_path(report_html)),
    }
}

/// The page: one row per group, each bundle linked; `base` is the page's directory (absolute).
pub fn page(triage: &Triage, base: &Path) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <title>tracer triage</title>\n<style>body{font-family:'DejaVu Sans',Helvetica,Arial,\
         sans-serif;margin:1.5em}table{border-collapse:collapse}th,td{border:1px solid #ccc;\
         padding:.2em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}\
         @media print{tr{break-inside:avoid}}</style></head>\n<body>\n<h1>tracer triage</h1>\n",
    );
    let _ = writeln!(
        out,
        "<p id=\"totals\">{} bundles in {} groups; {} not readable.</p>",
        triage.bundles,
        triage.groups.len(),
        triage.unreadable.len()
    );
    out.push_str(
        "<table id=\"groups\"><thead><tr><th>count</th><th>signature</th><th>class</th>\
         <th>verdict</th><th>first seen</th><th>last seen</th><th>hosts</th><th>kernels</th>\
         <th>tests</th><th>example</th><th>bundles</th></tr></thead><tbody>\n",
    );
    for group in &triage.groups {
        let links: Vec<String> = group
            .bundles
            .iter()
            .map(|bundle| match &bundle.report_html {
                Some(html) => format!(
                    "<a href=\"{}\">{}</a>",
                    escape(&href(html, base)),
                    escape(&bundle.location)
                ),
                None => escape(&bundle.location),
            })
            .collect();
        let cells = [
            group.count.to_string(),
            group.signature.clone(),
            group.class.clone(),
            group.summary.clone(),
            group
                .first_seen
                .clone()
                .unwrap_or_else(|| "not recorded".into()),
            group
                .last_seen
                .clone()
                .unwrap_or_else(|| "not recorded".into()),
            joined(&group.hosts, "-"),
            joined(&group.kernels, "-"),
            joined(&group.tests, "not named"),
            group.example.clone(),
        ];
        out.push_str("<tr class=\"group\">");
        for cell in cells {
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        let _ = writeln!(out, "<td>{}</td></tr>", links.join("<br>"));
    }
    out.push_str("</tbody></table>\n");
    if !triage.unreadable.is_empty() {
        out.push_str("<h2>Not readable</h2>\n<ul id=\"unreadable\">\n");
        for unreadable in &triage.unreadable {
            let _ = writeln!(
                out,
                "<li>{}: {}</li>",
                escape(&unreadable.location),
                escape(&unreadable.reason)
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_below_the_page_and_encoded() {
        let base = Path::new("/ci/artifacts");
        assert_eq!(
            href("/ci/artifacts/run 1/report.html", base),
            "run%201/report.html"
        );
        assert_eq!(
            href("/elsewhere/a\"<b>/report.html", base),
            "file:///elsewhere/a%22%3Cb%3E/report.html"
        );
    }
}
