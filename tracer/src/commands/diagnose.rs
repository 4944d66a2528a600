//! `tracer diagnose`: gather the evidence of each pair (or read a saved report's), classify,
//! render.

use std::{path::Path, time::SystemTime};

use tracer_evidence::{Evidence, Report, Verdict, diagnose};

use crate::{
    bundle::{self, ReportDir},
    cli::DiagnoseArgs,
    collect::identity::identity,
    error::UsageError,
    gather::{self, Pair},
    layout::{self, PlannedPair, WhenNone},
    output, preflight,
    render::{self, html},
    saved::{self, SavedBundle},
};

pub fn run(args: &DiagnoseArgs, verbosity: u8) -> anyhow::Result<u8> {
    let started = SystemTime::now();
    let saved: Option<SavedBundle> = args.from.as_deref().map(saved::read).transpose()?;
    let mut discovery = None;
    let evidence: Vec<Evidence> = match &saved {
        Some(saved) => vec![saved.evidence.clone()],
        None => {
            let plan = layout::plan(&flags(args), &args.layout, WhenNone::Refuse)?;
            preflight::check()?;
            plan.require_defaulted()?;
            discovery = plan.discovery;
            let pairs = pairs(args, plan.pairs);
            if let Some(dir) = &args.report {
                prepare_report_dir(dir)?;
            }
            // Ready once the first pair's programs are attached, or at the end when none could
            // be (the ports were unusable): scripts wait on it either way.
            let ready = || -> anyhow::Result<()> {
                match &args.ready_file {
                    Some(path) if !path.exists() => Ok(super::write_ready_file(path)?),
                    _ => Ok(()),
                }
            };
            let mut gathered = Vec::new();
            for pair in &pairs {
                gathered.push(gather::active::gather(pair, verbosity, &mut || ready())?);
            }
            ready()?;
            gathered
        }
    };
    let verdicts: Vec<Verdict> = evidence.iter().map(diagnose).collect();
    // The first pair that failed decides; all ok is 0.
    let decisive = verdicts
        .iter()
        .position(|verdict| verdict.class.exit_code() != 0)
        .unwrap_or(0);
    let code = verdicts[decisive].class.exit_code();
    // A saved bundle keeps the identity of the run that made it.
    let run_identity = match &saved {
        Some(saved) => saved.parts.identity.clone(),
        None => Some(identity(started, i32::from(code))),
    };
    let reports: Vec<Report> = verdicts
        .iter()
        .zip(&evidence)
        .map(|(verdict, evidence)| {
            let report = Report::new(verdict, evidence);
            match &run_identity {
                Some(identity) => report.with_identity(identity.clone()),
                None => report,
            }
        })
        .collect();
    let several = reports.len() > 1;
    if args.json {
        // Pairs that were looked for always come as a list, with what was found.
        let json = match (reports.as_slice(), &discovery) {
            ([only], None) => serde_json::to_string(only)?,
            (all, None) => serde_json::to_string(&serde_json::json!({ "pairs": all }))?,
            (all, Some(found)) => {
                serde_json::to_string(&serde_json::json!({ "layout": found, "pairs": all }))?
            }
        };
        output::print_line(&json)?;
    } else {
        if let Some(found) = &discovery {
            output::print_text(&render::layout::text(found))?;
        }
        let terminal = output::colour();
        for (index, report) in reports.iter().enumerate() {
            if several {
                output::print_line(&format!(
                    "== pair {}: {}",
                    index + 1,
                    pair_name(report.evidence)
                ))?;
            }
            output::print_text(&render::diagnose::text(report, terminal))?;
        }
    }
    if let Some(dir) = &args.report {
        let dir = if args.from.is_some() {
            ReportDir::create(dir)?
        } else {
            ReportDir::open(dir)?
        };
        let extras = saved_extras(saved.as_ref());
        for (index, report) in reports.iter().enumerate() {
            if several {
                let pair_dir = dir.subdirectory(&format!("pair-{}", index + 1))?;
                write_report(&pair_dir, report, &html::Extras::default())?;
            } else {
                write_report(&dir, report, &extras)?;
            }
        }
    }
    if let Some(file) = &args.svg {
        let picture = render::path::svg(&evidence[decisive], &verdicts[decisive]);
        bundle::write_file(file, picture.as_bytes())?;
    }
    if let Some(file) = &args.html {
        let page = html::page(&reports[decisive], &saved_extras(saved.as_ref()));
        bundle::write_file(file, page.as_bytes())?;
    }
    Ok(code)
}

/// What a saved watch bundle adds to the page: its timeline, command and capture.
fn saved_extras(saved: Option<&SavedBundle>) -> html::Extras<'_> {
    let Some(saved) = saved else {
        return html::Extras::default();
    };
    html::Extras {
        timeline: saved.parts.timeline.as_ref(),
        command: saved.parts.command.as_ref(),
        capture_counts: saved.parts.capture.as_ref(),
        capture: saved.capture.as_ref(),
    }
}

pub(crate) fn write_report(
    dir: &ReportDir,
    report: &Report,
    extras: &html::Extras,
) -> anyhow::Result<()> {
    let markdown = render::diagnose::markdown(report);
    let markdown = render::github::fit(&markdown, render::github::ISSUE_BODY_LIMIT);
    dir.write("report.md", markdown.as_bytes())?;
    dir.write("report.html", html::page(report, extras).as_bytes())?;
    dir.write(
        "report.json",
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?;
    dir.write(
        "path.svg",
        render::path::svg(report.evidence, report.verdict.verdict).as_bytes(),
    )?;
    Ok(())
}

fn pair_name(evidence: &Evidence) -> String {
    format!(
        "{} {} -> {} {}",
        evidence.initiator.spec(),
        evidence.environment.initiator_ip,
        evidence.target.spec(),
        evidence.environment.target_ip
    )
}

fn flags(args: &DiagnoseArgs) -> layout::Flags<'_> {
    layout::Flags {
        initiators: &args.initiators,
        targets: &args.targets,
        initiator_ips: &args.initiator_ips,
        target_ips: &args.target_ips,
    }
}

/// The pairs to diagnose, with the TCP port and hook.
fn pairs(args: &DiagnoseArgs, planned: Vec<PlannedPair>) -> Vec<Pair> {
    planned
        .into_iter()
        .map(|pair| Pair {
            initiator: pair.initiator,
            target: pair.target,
            initiator_ip: pair.initiator_ip,
            target_ip: pair.target_ip,
            tcp_port: args.counting.tcp_port,
            ingress_hook: args.counting.ingress_hook,
            cable_ports: args.cable_ports.clone(),
        })
        .collect()
}

/// Creates the report directory up front, so that an unwritable one fails before probing.
pub fn prepare_report_dir(dir: &Path) -> Result<(), UsageError> {
    ReportDir::create(dir).map(drop)
}
