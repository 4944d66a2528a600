//! `tracer diagnose`: gather the evidence (or read a saved report's), classify, render.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tracer_evidence::{Evidence, diagnose, evidence_from_report};

use crate::{cli::DiagnoseArgs, collect::probing, error::UsageError, preflight, render};

pub fn run(args: &DiagnoseArgs, verbosity: u8) -> anyhow::Result<u8> {
    let evidence = match &args.from {
        Some(saved) => saved_evidence(saved)?,
        None => {
            preflight::check()?;
            if let Some(dir) = &args.report {
                prepare_report_dir(dir)?;
            }
            let mut ready = || match &args.ready_file {
                Some(path) => Ok(super::write_ready_file(path)?),
                None => Ok(()),
            };
            let evidence = probing::gather(&probed_path(args), verbosity, &mut ready)?;
            if let Some(path) = &args.ready_file
                && !path.exists()
            {
                // Nothing was attached (the ports were unusable): ready all the same, for scripts.
                super::write_ready_file(path)?;
            }
            evidence
        }
    };
    let verdict = diagnose(&evidence);
    let report = render::diagnose::Report::new(&verdict, &evidence);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!(
            "{}",
            render::diagnose::text(
                &report,
                std::io::IsTerminal::is_terminal(&std::io::stdout())
            )
        );
    }
    if let Some(dir) = &args.report {
        if args.from.is_some() {
            prepare_report_dir(dir)?;
        }
        std::fs::write(dir.join("report.md"), render::diagnose::markdown(&report))
            .with_context(|| format!("writing {}", dir.join("report.md").display()))?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&report)?,
        )
        .with_context(|| format!("writing {}", dir.join("report.json").display()))?;
    }
    let picture = render::path::svg(&evidence, &verdict);
    for file in args
        .report
        .iter()
        .map(|dir| dir.join("path.svg"))
        .chain(args.svg.clone())
    {
        std::fs::write(&file, &picture).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(verdict.class.exit_code())
}

fn probed_path(args: &DiagnoseArgs) -> probing::ProbedPath {
    probing::ProbedPath {
        initiator: args.ports.initiator.clone(),
        target: args.ports.target.clone(),
        initiator_ip: args.initiator_ip,
        target_ip: args.target_ip,
        port: args.ports.port,
        ingress_hook: args.ports.ingress_hook,
    }
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
    let unusable = |err: std::io::Error| {
        UsageError::Argument(format!(
            "report directory {} cannot be written: {err}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(unusable)?;
    let probe = dir.join(".tracer-write-test");
    std::fs::write(&probe, b"").map_err(unusable)?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}
