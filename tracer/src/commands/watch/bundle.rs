//! The bundle: report.md, report.json, capture.pcapng, path.svg, timeline.svg and a snapshot of
//! each namespace.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::SystemTime,
};

use tracer_evidence::{
    CaptureReport, CommandReport, Evidence, KEPT_PER_KIND_AT_EACH_END, Report, Timeline,
    WatchReport,
};

use crate::{
    bundle::ReportDir,
    capture,
    collect::identity::identity,
    error::UsageError,
    gather::passive::observe::Watch,
    netfilter::{KEPT_RULE_WINDOWS, Ruleset},
    netns, output, pcapng, render, tool,
};

/// What of a bundle the disk refused (full, read-only, failing): each file is tried in turn,
/// so that as much as fits is written, and the ones missing are named. Anything else (a
/// planted link) stops the bundle at once.
pub(super) struct BundleFiles {
    dir: PathBuf,
    written: usize,
    missing: Vec<String>,
    reason: Option<String>,
}

impl BundleFiles {
    pub(super) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            written: 0,
            missing: Vec::new(),
            reason: None,
        }
    }

    /// The result of writing the file `what`: `None` when the disk refused it.
    pub(super) fn attempt<T>(
        &mut self,
        what: &str,
        result: Result<T, UsageError>,
    ) -> anyhow::Result<Option<T>> {
        let written = self.attempt_directory(what, result)?;
        self.written += usize::from(written.is_some());
        Ok(written)
    }

    /// The result of making the directory `what` (nothing written yet): `None` when the disk
    /// refused it.
    pub(super) fn attempt_directory<T>(
        &mut self,
        what: &str,
        result: Result<T, UsageError>,
    ) -> anyhow::Result<Option<T>> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(UsageError::ReportUnwritable { source, .. }) => {
                self.missing.push(what.to_owned());
                self.reason.get_or_insert_with(|| source.to_string());
                Ok(None)
            }
            Err(refused) => Err(refused.into()),
        }
    }

    pub(super) fn write(
        &mut self,
        dir: &ReportDir,
        name: &str,
        bytes: &[u8],
    ) -> anyhow::Result<()> {
        self.attempt(name, dir.write(name, bytes)).map(drop)
    }

    /// One line for stderr: where the bundle is, or what of it is missing and why.
    pub(super) fn outcome(&self) -> String {
        let dir = self.dir.display();
        let Some(reason) = &self.reason else {
            return format!("tracer: report in {dir}\n");
        };
        let partial = if self.written > 0 {
            format!("the partial bundle is in {dir}")
        } else {
            format!("nothing was written to {dir}")
        };
        format!(
            "tracer: the report could not be written whole ({reason}): {} not written; {partial}\n",
            self.missing.join(", ")
        )
    }
}

/// The bundle's verdict: the first failed pair's (else the first's), and a word on every pair
/// for report.md.
pub(super) struct Diagnosis<'a> {
    pub(super) verdict: &'a tracer_evidence::Verdict,
    pub(super) evidence: &'a Evidence,
    pub(super) pairs_markdown: &'a str,
    /// The test SPDK's tag file named last, if any.
    pub(super) test: Option<&'a str>,
}

/// report.md, report.json, capture.pcapng, the pictures and a snapshot of each namespace.
pub(super) fn write_bundle(
    dir: &ReportDir,
    files: &mut BundleFiles,
    Diagnosis {
        verdict,
        evidence,
        pairs_markdown,
        test,
    }: Diagnosis<'_>,
    timeline: &Timeline,
    command: CommandReport,
    watch: &Watch,
    final_rulesets: &BTreeMap<String, Ruleset>,
) -> anyhow::Result<()> {
    let mut write = |name: &str, bytes: &[u8]| files.write(dir, name, bytes);
    let recorders: Vec<_> = watch.ports.iter().map(|port| &port.recorder).collect();
    let frames = recorders.iter().map(|r| r.frames().count()).sum();
    let evicted = recorders.iter().map(|r| r.evicted).sum();
    let started = SystemTime::now() - watch.started.elapsed();
    let mut identity = identity(started, command.exit_code);
    identity.test = test.map(str::to_owned);
    let capture_file = capture::pcapng(&recorders);
    let limits_reached = limits_reached(timeline, watch, evicted);
    for limit in &limits_reached {
        output::note(&format!("tracer: {limit}\n"));
    }
    let report = WatchReport {
        diagnosis: Report::new(verdict, evidence).with_identity(identity),
        timeline,
        command,
        capture: CaptureReport {
            file: "capture.pcapng",
            frames,
            evicted,
            lost_events: watch.lost_events(),
        },
        limits_reached,
    };
    let mut markdown = render::diagnose::markdown(&report.diagnosis);
    markdown.push_str(pairs_markdown);
    markdown.push_str(&format!(
        "\n## Command\n\n- `{}` exited with {}\n",
        report.command.argv.join(" "),
        report.command.exit_code
    ));
    markdown.push_str(
        "\n## Timeline\n\n[timeline.svg](timeline.svg): carrier and neighbour states and drops per port, over time.\n\n| time | what | event |\n|---|---|---|\n",
    );
    for event in &timeline.events {
        markdown.push_str(&format!(
            "| +{:.3}s | {} | {} |\n",
            event.seconds,
            event.kind,
            // One table row per event, whatever the message holds.
            event.message.replace('|', "\\|").replace('\n', "; ")
        ));
    }
    if !timeline.summarised.is_empty() {
        markdown.push('\n');
    }
    for summary in &timeline.summarised {
        markdown.push_str(&format!("- {}.\n", summary.line()));
    }
    if let Some(storm) = drops_elsewhere(watch) {
        markdown.push_str(&format!("\n## Elsewhere\n\n{storm}\n"));
    }
    if !report.limits_reached.is_empty() {
        markdown.push_str("\n## Limits reached\n\n");
        for limit in &report.limits_reached {
            markdown.push_str(&format!("- {limit}\n"));
        }
    }
    markdown.push_str(&format!(
        "\n## Capture\n\n`capture.pcapng`: the last {frames} ARP, ICMP and port frames of both ports ({evicted} older ones not kept); `tcpdump -r capture.pcapng` or Wireshark. Events lost in the kernel programs: {}.\n",
        report.capture.lost_events
    ));
    let fitted = render::github::fit(&markdown, render::github::ISSUE_BODY_LIMIT);
    if fitted != markdown {
        output::note(&format!(
            "tracer: report.md cut to GitHub's limit of {} characters (report.json and report.html have it all)\n",
            render::github::ISSUE_BODY_LIMIT
        ));
    }
    let markdown = fitted;
    write("report.md", markdown.as_bytes())?;
    write(
        "report.json",
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    let extras = render::html::Extras {
        timeline: Some(timeline),
        command: Some(&report.command),
        capture_counts: Some(&report.capture),
        capture: Some(&pcapng::read(&capture_file)),
    };
    write(
        "report.html",
        render::html::page(&report.diagnosis, &extras).as_bytes(),
    )?;
    write("capture.pcapng", &capture_file)?;
    write("path.svg", render::path::svg(evidence, verdict).as_bytes())?;
    write(
        "timeline.svg",
        render::timeline::svg(timeline, evidence, verdict).as_bytes(),
    )?;

    let Some(snapshots) = files.attempt_directory("snapshot/", dir.subdirectory("snapshot"))?
    else {
        return Ok(());
    };
    for (netns, ruleset) in final_rulesets {
        let file = if netns.is_empty() {
            "own-namespace.txt".to_owned()
        } else {
            format!("{netns}.txt")
        };
        let shown = format!("snapshot/{file}");
        let written = snapshots.write(&file, namespace_snapshot(netns, ruleset).as_bytes());
        files.attempt(&shown, written)?;
    }
    Ok(())
}

/// The size caps the bundle reached, one line each: what was kept, what was counted instead.
fn limits_reached(timeline: &Timeline, watch: &Watch, evicted: u64) -> Vec<String> {
    let mut limits = Vec::new();
    if timeline.truncated > 0 {
        limits.push(format!(
            "the timeline keeps the first and last {KEPT_PER_KIND_AT_EACH_END} events of each kind: {} between them counted, not kept (report.json: timeline.summarised)",
            timeline.truncated
        ));
    }
    if evicted > 0 {
        limits.push(format!(
            "capture.pcapng keeps the last --capture-frames frames of each port: {evicted} older frames not kept"
        ));
    }
    if watch.rules.forgotten > 0 {
        limits.push(format!(
            "the rule windows keep {KEPT_RULE_WINDOWS}: {} older rules that came and went counted, not kept",
            watch.rules.forgotten
        ));
    }
    limits
}

/// The kernel's drops away from the watched ports while watching, as one line: how many, by
/// reason; `None` when there were none.
fn drops_elsewhere(watch: &Watch) -> Option<String> {
    let counts = watch.other_drop_counts();
    let total: u64 = counts.iter().map(|drop| drop.count).sum();
    if total == 0 {
        return None;
    }
    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for drop in &counts {
        *by_reason.entry(&drop.reason).or_default() += drop.count;
    }
    let mut reasons: Vec<(&str, u64)> = by_reason.into_iter().collect();
    reasons.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    let reasons: Vec<String> = reasons
        .iter()
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect();
    Some(format!(
        "Kernel drops away from the watched ports while watching: {total} ({}); report.json: counters.other_drops.",
        reasons.join(", ")
    ))
}

/// Addresses, routes, neighbours and the netfilter ruleset of one namespace, as text.
pub(super) fn namespace_snapshot(netns: &str, ruleset: &Ruleset) -> String {
    let mut out = format!("# namespace {}\n", netns::display_name(netns));
    for (title, args) in [
        ("addresses", &["addr", "show"][..]),
        ("routes", &["route", "show", "table", "all"][..]),
        ("neighbours", &["neigh", "show"][..]),
    ] {
        out.push_str(&format!("\n## {title} (ip {})\n", args.join(" ")));
        match tool::run(netns, "ip", args) {
            Ok(text) => out.push_str(&text),
            Err(err) => out.push_str(&format!("({err})\n")),
        }
    }
    out.push_str("\n## netfilter rules (backend family table chain: rule [packets])\n");
    for chain in &ruleset.chains {
        if chain.policy_drop {
            out.push_str(&format!(
                "{} {} {} {}: policy drop [{}]\n",
                chain.backend.name(),
                chain.family,
                chain.table,
                chain.name,
                chain
                    .policy_packets
                    .map_or_else(|| "-".to_owned(), |p| p.to_string())
            ));
        }
    }
    for rule in &ruleset.rules {
        out.push_str(&format!(
            "{} {} {} {}: {} [{}]\n",
            rule.backend.name(),
            rule.family,
            rule.table,
            rule.chain,
            rule.text,
            rule.packets
                .map_or_else(|| "-".to_owned(), |p| p.to_string())
        ));
    }
    for error in &ruleset.errors {
        out.push_str(&format!("note: {error}\n"));
    }
    out
}
