//! `tracer counters`: attach, count until the duration ends or a signal, report.

use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::CountersArgs,
    collect::{ebpf_log_level, ports::PortOptions},
    layout::{self, WhenNone},
    output, preflight, render,
    session::Session,
};

pub fn run(args: &CountersArgs, verbosity: u8) -> anyhow::Result<()> {
    preflight::check()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let options = PortOptions {
        tcp_port: args.ports.counting.tcp_port,
        capture: false,
        log_level: ebpf_log_level(verbosity),
        ingress: args.ports.counting.ingress_hook,
    };
    let plan = layout::plan(
        &args.ports.flags(&[], &[]),
        &args.ports.layout,
        WhenNone::Refuse,
    )?;
    let specs = plan.ports();
    let mut session = Session::attach(&specs, &options).map_err(|err| plan.explain(err))?;
    let logger = session.drops.take_logger();

    runtime.block_on(async {
        // Signal handlers go in before the ready file: from then on, Ctrl-C means "report".
        let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut terminate =
            signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        if let Some(path) = &args.ready_file {
            super::write_ready_file(path)?;
        }
        if let Some(logger) = logger {
            crate::logging::forward_ebpf_logs(logger)?;
        }
        if args.duration.is_none() {
            output::note(&format!(
                "tracer: counting on {} port(s); Ctrl-C or SIGTERM stops and prints the counts \
                 (--duration SECS stops by itself)\n",
                specs.len()
            ));
        }
        let duration = async {
            match args.duration {
                Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = duration => {}
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        anyhow::Ok(())
    })?;

    let report = session.counters_report()?;
    drop(session);
    if args.json {
        let mut json = serde_json::to_value(&report)?;
        if let (Some(found), Some(object)) = (&plan.discovery, json.as_object_mut()) {
            object.insert("layout".to_owned(), serde_json::to_value(found)?);
        }
        output::print_line(&serde_json::to_string(&json)?)?;
    } else {
        if let Some(found) = &plan.discovery {
            output::print_text(&render::layout::text(found))?;
        }
        output::print_text(&render::counters::text(
            &report,
            args.ports.counting.tcp_port,
        ))?;
    }
    Ok(())
}
