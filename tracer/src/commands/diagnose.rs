//! `tracer diagnose`: gather the evidence of each pair (or read a saved report's), classify,
//! render.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use tracer_evidence::{Evidence, Report, Verdict, diagnose, evidence_from_report};

use crate::{
    bundle::ReportDir,
    cli::DiagnoseArgs,
    error::UsageError,
    gather::{self, Pair},
    output, preflight, render,
};

pub fn run(args: &DiagnoseArgs, verbosity: u8) -> anyhow::Result<u8> {
    let evidence: Vec<Evidence> = match &args.from {
        Some(saved) => vec![saved_evidence(saved)?],
        None => {
            let pairs = pairs(args)?;
            preflight::check()?;
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
    let reports: Vec<Report> = verdicts
        .iter()
        .zip(&evidence)
        .map(|(verdict, evidence)| Report::new(verdict, evidence))
        .collect();
    let several = reports.len() > 1;
    if args.json {
        let json = match reports.as_slice() {
            [only] => serde_json::to_string(only)?,
            all => serde_json::to_string(&serde_json::json!({ "pairs": all }))?,
        };
        output::print_line(&json)?;
    } else {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
        for (index, report) in reports.iter().enumerate() {
            if several {
                output::print_line(&format!(
                    "== pair {}: {}",
                    index + 1,
                    pair_name(report.evidence)
                ))?;
            }
            output::print(&render::diagnose::text(report, terminal))?;
        }
    }
    if let Some(dir) = &args.report {
        let dir = if args.from.is_some() {
            ReportDir::create(dir)?
        } else {
            ReportDir::open(dir)?
        };
        for (index, report) in reports.iter().enumerate() {
            if several {
                write_report(&dir.subdirectory(&format!("pair-{}", index + 1))?, report)?;
            } else {
                write_report(&dir, report)?;
            }
        }
    }
    // The first pair that failed decides; all ok is 0.
    let decisive = verdicts
        .iter()
        .position(|verdict| verdict.class.exit_code() != 0)
        .unwrap_or(0);
    if let Some(file) = &args.svg {
        let picture = render::path::svg(&evidence[decisive], &verdicts[decisive]);
        std::fs::write(file, picture).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(verdicts[decisive].class.exit_code())
}

fn write_report(dir: &ReportDir, report: &Report) -> anyhow::Result<()> {
    dir.write("report.md", render::diagnose::markdown(report).as_bytes())?;
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

/// The pairs to diagnose: the Nth --initiator, --target, --initiator-ip and --target-ip.
fn pairs(args: &DiagnoseArgs) -> Result<Vec<Pair>, UsageError> {
    let count = args.initiators.len();
    if args.targets.len() != count
        || args.initiator_ips.len() != count
        || args.target_ips.len() != count
    {
        return Err(UsageError::Argument(format!(
            "{count} --initiator but {} --target, {} --initiator-ip and {} --target-ip: give each once per pair",
            args.targets.len(),
            args.initiator_ips.len(),
            args.target_ips.len()
        )));
    }
    Ok((0..count)
        .map(|i| Pair {
            initiator: args.initiators[i].clone(),
            target: args.targets[i].clone(),
            initiator_ip: args.initiator_ips[i],
            target_ip: args.target_ips[i],
            tcp_port: args.counting.tcp_port,
            ingress_hook: args.counting.ingress_hook,
            cable_ports: args.cable_ports.clone(),
        })
        .collect())
}

/// The evidence saved in a bundle directory (its report.json) or a report.json itself.
fn saved_evidence(path: &Path) -> Result<Evidence, UsageError> {
    let file: PathBuf = if path.is_dir() {
        path.join("report.json")
    } else {
        path.to_owned()
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|err| UsageError::Argument(format!("cannot read {}: {err}", file.display())))?;
    evidence_from_report(&text)
        .map_err(|err| UsageError::Argument(format!("{}: {err}", file.display())))
}

/// Creates the report directory up front, so that an unwritable one fails before probing.
pub fn prepare_report_dir(dir: &Path) -> Result<(), UsageError> {
    ReportDir::create(dir).map(drop)
}
