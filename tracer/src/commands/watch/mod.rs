//! `tracer watch -- CMD`: watch both ports while a test runs, follow them wherever the test
//! moves them, and write the root-cause bundle when the test fails.

mod bundle;
mod pace;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::ExitStatus,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tracer_evidence::{CommandReport, Report, Side, Verdict, diagnose};

use self::{
    bundle::{BundleFiles, Diagnosis, write_bundle},
    pace::{ANNOUNCEMENTS, GROUPS, Pace, Wakeups},
};
use crate::{
    bundle::ReportDir,
    capture, child,
    cli::WatchArgs,
    collect::{
        drops::DropPrograms, ebpf_log_level, events::NetworkEvents, follow::Concern,
        ports::PortOptions, test_tag,
    },
    commands::diagnose::write_report,
    error::UsageError,
    gather::{
        self, Pair,
        passive::observe::{LiveTimeline, Watch, WatchedPort},
    },
    layout::{self, Discovery, WhenNone},
    output, preflight, render,
};

/// How long after the command exits tracer keeps counting.
const SETTLE: Duration = Duration::from_millis(200);

/// The file that makes a directory a bundle: one holding it is never overwritten.
const BUNDLE_MARKER: &str = "report.json";

/// Where this run's bundle goes: `--report`, or, when that already holds a bundle (and no
/// --force), the first `DIR-N` that holds none: an earlier run's evidence is never replaced,
/// and the command still runs (a CI wrapper's test is not refused for a name).
fn bundle_dir(report: &Path, force: bool) -> PathBuf {
    // A bundle's report.json is a regular file; anything else planted there (a symbolic link,
    // say) is refused when the bundle is written, not taken for an earlier run's.
    let holds_bundle = |dir: &Path| {
        std::fs::symlink_metadata(dir.join(BUNDLE_MARKER)).is_ok_and(|meta| meta.is_file())
    };
    if force || !holds_bundle(report) {
        return report.to_owned();
    }
    let mut numbered = (2..).map(|n| {
        let mut name = report.as_os_str().to_owned();
        name.push(format!("-{n}"));
        PathBuf::from(name)
    });
    let free = numbered
        .find(|dir| !holds_bundle(dir))
        .expect("an unbounded range finds a free name");
    output::note(&format!(
        "tracer: {} already holds a bundle: this run's goes to {} (--force replaces it)\n",
        report.display(),
        free.display()
    ));
    free
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1)
}

pub fn run(args: &WatchArgs, verbosity: u8) -> anyhow::Result<u8> {
    preflight::check()?;
    child::check(&args.command)?;
    // Nothing is created before a bundle is written: a passing run leaves no trace.
    let report_dir = bundle_dir(&args.report, args.force);
    match ReportDir::check_new(&report_dir, BUNDLE_MARKER, args.force) {
        // The command is what the user came for: it runs, and the bundle is tried at the end.
        Err(UsageError::ReportUnwritable { path, source }) => output::note(&format!(
            "tracer: report directory {} cannot be written ({source}): the command runs; its \
             report will be tried at the end\n",
            path.display()
        )),
        checked => checked?,
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let options = PortOptions {
        tcp_port: args.ports.counting.tcp_port,
        capture: true,
        log_level: ebpf_log_level(verbosity),
        ingress: args.ports.counting.ingress_hook,
    };
    let plan = layout::plan(
        &args
            .ports
            .flags(args.initiator_ip.as_slice(), args.target_ip.as_slice()),
        &args.ports.layout,
        WhenNone::Follow,
    )?;
    if let Some(found) = &plan.discovery {
        output::note(&render::layout::text(found));
    }
    let drops = DropPrograms::attach(&options.log_level)?;
    let ports = plan
        .pairs
        .iter()
        .enumerate()
        .flat_map(|(index, pair)| {
            [
                WatchedPort::new(
                    index,
                    Side::Initiator,
                    &pair.initiator,
                    options,
                    args.capture_frames,
                ),
                WatchedPort::new(
                    index,
                    Side::Target,
                    &pair.target,
                    options,
                    args.capture_frames,
                ),
            ]
        })
        .collect();
    let mut watch = Watch {
        started: Instant::now(),
        ports,
        drops,
        last_drops: HashMap::new(),
        all_drops: HashMap::new(),
        other_drops: HashMap::new(),
        timeline: LiveTimeline::default(),
        clock_offset: capture::monotonic_to_unix_ns(),
        first_rulesets: HashMap::new(),
        captures_attached: 0,
        rules: Default::default(),
        rules_before_run: Vec::new(),
        command_started: false,
    };
    // Drops counted before the command starts are not the command's.
    watch.last_drops = watch
        .drops
        .drops()?
        .into_iter()
        .map(|drop| (drop.key, drop.count))
        .collect();
    // Joined before the first look: nothing that happens after it goes unannounced.
    let events = NetworkEvents::new(&GROUPS).context("joining rtnetlink's announcements")?;
    watch.tick(true);
    watch.snapshot_rulesets();
    watch.note_rules_before_run();
    for port in &watch.ports {
        if port.probe().is_none() {
            // The port may yet appear (the test makes it): wait, and say where its name came from.
            log::warn!(
                "{}",
                plan.about_port(
                    &port.spec,
                    &format!(
                        "{} not found yet: waiting for it to appear (in any namespace)",
                        port.spec
                    )
                )
            );
        }
    }

    let mut tests = RunningTest::default();
    let status = runtime.block_on(async {
        let mut signals = child::Signals::install().context("installing signal handlers")?;
        if let Some(path) = &args.ready_file {
            super::write_ready_file(path)?;
        }
        let mut child = child::spawn(&args.command, Duration::from_secs(args.kill_after))?;
        let started = watch.seconds();
        watch.command_started = true;
        watch.timeline.push(
            started,
            "command",
            format!("started: {}", args.command.join(" ")),
        );
        if let Some(path) = &args.test_tag_file {
            tests.read(path, started, &mut watch.timeline);
        }
        let mut events = events
            .into_async()
            .context("waiting for rtnetlink's announcements")?;
        let mut wakeups = Wakeups::new(&watch, events.get_ref())?;
        let mut pace = Pace::new();
        loop {
            let wake_at = pace.next_look(events.get_ref().next_retry());
            let pending = wakeups.readiness.readable_mut();
            tokio::select! {
                status = child.wait() => break status.context("waiting for the command"),
                number = signals.recv() => match &args.test_tag_file {
                    // SPDK's run_test signals its monitors when the test changes; the command
                    // (a shell, say) would die of SIGUSR1.
                    Some(path) if number == libc::SIGUSR1 => tests.read(path, watch.seconds(), &mut watch.timeline),
                    _ => child.forward(number),
                },
                ready = pending => {
                    let mut ready = ready.context("waiting for announcements and frames")?;
                    let tokens = ready.get_inner().ready();
                    // Only new input wakes again; what is left is read at the next look.
                    ready.clear_ready();
                    // Frames captured or rules changed.
                    let input = tokens.iter().any(|token| *token != ANNOUNCEMENTS);
                    let concern = if tokens.contains(&ANNOUNCEMENTS) {
                        let changes = events.get_mut().take();
                        log::trace!("announced: {changes:?}");
                        watch.concern(&changes)
                    } else {
                        Concern::None
                    };
                    log::debug!("woken: {concern:?}, frames captured or rules changed: {input}");
                    pace.woken(&mut watch, concern, input);
                }
                () = tokio::time::sleep_until(wake_at.into()) => {
                    if pace.full_look_overdue() {
                        // Namespaces inotify could not report (no /run/netns yet, say). The
                        // look that follows is in full: what joined needs no announcing.
                        events.get_mut().resync();
                    }
                    let changes = events.get_mut().take();
                    log::trace!("looking: {changes:?}");
                    let concern = watch.concern(&changes);
                    if pace.due() {
                        let full = pace.full_due() || concern != Concern::None;
                        pace.look(&mut watch, full, concern == Concern::Now);
                    } else {
                        pace.woken(&mut watch, concern, false);
                    }
                }
            }
            if wakeups.outdated(&watch) {
                wakeups = Wakeups::new(&watch, events.get_ref())?;
            }
        }
    })?;
    // Answers to the command's last requests may still be in flight: let them land before
    // the last look, or a healthy run would show an unanswered request.
    std::thread::sleep(SETTLE);
    watch.tick(true);
    let code = exit_code(status);
    if let Some(path) = &args.test_tag_file {
        tests.read(path, watch.seconds(), &mut watch.timeline);
    }
    watch
        .timeline
        .push(watch.seconds(), "command", format!("exited with {code}"));

    let failed = code != 0;
    let write_bundle_now = failed || args.always;
    // Read once, for the passive evidence and for the bundle's snapshots.
    let final_rulesets = if args.probe && !write_bundle_now {
        BTreeMap::new()
    } else {
        watch.final_rulesets()
    };
    let mut evidences = Vec::new();
    for (index, planned) in plan.pairs.iter().enumerate() {
        // The ports where they are now.
        let pair = Pair {
            initiator: watch.ports[2 * index].current_spec(),
            target: watch.ports[2 * index + 1].current_spec(),
            initiator_ip: planned.initiator_ip,
            target_ip: planned.target_ip,
            tcp_port: args.ports.counting.tcp_port,
            ingress_hook: args.ports.counting.ingress_hook,
            cable_ports: args.cable_ports.clone(),
        };
        evidences.push(if args.probe {
            let mut evidence = gather::active::gather(&pair, verbosity, &mut || Ok(()))?;
            evidence.drops.extend(watch.drop_evidence(index));
            evidence
        } else {
            gather::passive::evidence(&watch, index, &pair, &final_rulesets, verbosity)
        });
    }
    let verdicts: Vec<Verdict> = evidences.iter().map(diagnose).collect();
    // The first pair that failed is the bundle's; the others are beside it.
    let decisive = verdicts
        .iter()
        .position(|verdict| verdict.class.exit_code() != 0)
        .unwrap_or(0);
    let (evidence, verdict) = (&evidences[decisive], &verdicts[decisive]);
    for port in &watch.ports {
        for ((kind, direction), seen) in &port.seen {
            watch.timeline.push_on(
                port.side,
                seen.first,
                "packets",
                format!("first {kind} {direction} on {}", port.name()),
                None,
            );
            if seen.last > seen.first {
                watch.timeline.push_on(
                    port.side,
                    seen.last,
                    "packets",
                    format!("last {kind} {direction} on {}", port.name()),
                    None,
                );
            }
        }
    }
    let timeline = std::mem::take(&mut watch.timeline).sorted();
    for (index, (verdict, evidence)) in verdicts.iter().zip(&evidences).enumerate() {
        let pair = if verdicts.len() > 1 {
            format!("pair {} ", index + 1)
        } else {
            String::new()
        };
        output::note(&format!(
            "tracer: {pair}verdict {} ({}): {}\n",
            verdict.class.name(),
            verdict.signature(evidence),
            verdict.summary()
        ));
    }
    if write_bundle_now {
        // The command's exit code is what watch exits with, whatever the disk says.
        let mut files = BundleFiles::new(&report_dir);
        if let Some(dir) = files.attempt_directory("the bundle", ReportDir::create(&report_dir))? {
            dir.refuse_bundle(BUNDLE_MARKER, args.force)?;
            let pairs_markdown = pairs_markdown(plan.discovery.as_ref(), &verdicts, decisive);
            write_bundle(
                &dir,
                &mut files,
                Diagnosis {
                    verdict,
                    evidence,
                    pairs_markdown: &pairs_markdown,
                    test: tests.name.as_deref(),
                },
                &timeline,
                CommandReport {
                    argv: args.command.clone(),
                    exit_code: code,
                },
                &watch,
                &final_rulesets,
            )?;
            if verdicts.len() > 1 {
                for (index, (verdict, evidence)) in verdicts.iter().zip(&evidences).enumerate() {
                    let name = format!("pair-{}", index + 1);
                    let report = Report::new(verdict, evidence);
                    let Some(pair_dir) = files.attempt_directory(&name, dir.subdirectory(&name))?
                    else {
                        continue;
                    };
                    write_report(&pair_dir, &report, &render::html::Extras::default()).or_else(
                        |err| match err.downcast::<UsageError>() {
                            Ok(refused) => files.attempt::<()>(&name, Err(refused)).map(drop),
                            Err(err) => Err(err),
                        },
                    )?;
                }
            }
        }
        output::note(&files.outcome());
    }
    drop(watch);
    Ok(u8::try_from(code).unwrap_or(1))
}

/// The layout found and every pair's verdict, for report.md (empty for one pair by flags).
/// The test SPDK's tag file names, as last read.
#[derive(Default)]
struct RunningTest {
    name: Option<String>,
}

impl RunningTest {
    /// Reads the tag file; a new name goes into the timeline. A file gone or empty keeps the
    /// last name: the test that ran is still the last one named.
    fn read(&mut self, path: &Path, seconds: f64, timeline: &mut LiveTimeline) {
        let Some(name) = test_tag::read(path) else {
            return;
        };
        if self.name.as_deref() != Some(name.as_str()) {
            timeline.push(seconds, "test", format!("running: {name}"));
            self.name = Some(name);
        }
    }
}

fn pairs_markdown(discovery: Option<&Discovery>, verdicts: &[Verdict], decisive: usize) -> String {
    let mut out = String::new();
    if let Some(found) = discovery {
        out.push_str(&format!(
            "\n## Layout\n\n```\n{}```\n",
            render::layout::text(found)
        ));
    }
    if verdicts.len() > 1 {
        out.push_str("\n## Pairs\n\n");
        for (index, verdict) in verdicts.iter().enumerate() {
            let shown = if index == decisive {
                " (this report)"
            } else {
                ""
            };
            out.push_str(&format!(
                "- pair {}: {}{shown}: {} ([pair-{}/report.md](pair-{}/report.md))\n",
                index + 1,
                verdict.class.name(),
                verdict.summary(),
                index + 1,
                index + 1
            ));
        }
    }
    out
}
