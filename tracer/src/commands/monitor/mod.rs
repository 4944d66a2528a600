//! `tracer monitor`: counts on both ports for as long as it runs, follows them wherever they go,
//! and serves the counts to Prometheus. The counters are pinned on bpffs, so that they outlive
//! a restart.

mod cabling;
mod state;

use std::{cell::RefCell, path::Path, rc::Rc, time::Duration};

use anyhow::Context as _;
use log::{debug, info, warn};
use tokio::{
    net::{TcpListener, TcpStream},
    signal::unix::{SignalKind, signal},
    time::Instant,
};

use self::state::Monitor;
use crate::{
    cli::MonitorArgs,
    collect::{
        events::NetworkEvents,
        follow::{Concern, MOVE_SETTLE},
        test_tag,
    },
    error::UsageError,
    http::{self, Request, Response},
    layout::{self, WhenNone},
    netlink::Group,
    output,
    pins::{self, PinLock},
    preflight,
    render::{
        self,
        metrics::{self, Format},
    },
};

/// How often the ports are looked at without being told of a change, and the drop counters
/// swept; scrapes are answered from the last look. Links that appear, move, go or lose carrier
/// are announced by the kernel and looked at within milliseconds.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Connections served at once, so that clients can never take the descriptors the ports'
/// follower needs; at the limit the oldest silent one makes room ([`http::Connections`]).
const MAX_CONNECTIONS: usize = 64;

pub fn run(args: &MonitorArgs, verbosity: u8) -> anyhow::Result<()> {
    preflight::check()?;
    if args.unpin {
        return unpin(&args.pin_dir);
    }
    let plan = layout::plan(
        &args.ports.flags(&[], &[]),
        &args.ports.layout,
        WhenNone::Follow,
    )?;
    let specs = plan.ports();
    if let Some(twice) = specs
        .iter()
        .enumerate()
        .find_map(|(index, spec)| specs[..index].contains(spec).then_some(spec))
    {
        return Err(UsageError::Argument(format!(
            "port `{twice}` is given twice: initiator and target must differ"
        ))
        .into());
    }
    if let Some(found) = &plan.discovery {
        for line in render::layout::text(found).lines() {
            info!("{line}");
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The address is the user's to fix, and refused before anything is attached.
    let listener = runtime
        .block_on(TcpListener::bind(args.metrics_addr))
        .map_err(|err| {
            UsageError::Argument(format!(
                "cannot serve metrics on {}: {err}; choose another --metrics-addr",
                args.metrics_addr
            ))
        })?;

    pins::prepare_root(&args.pin_dir)?;
    let _lock = PinLock::acquire(&args.pin_dir)?;
    if args.reset {
        let removed = pins::remove_all(&args.pin_dir)?;
        info!(
            "--reset: removed {} pinned maps from {}",
            removed.len(),
            args.pin_dir.display()
        );
    }
    // Joined before the first look: nothing that happens after it goes unannounced.
    let events =
        NetworkEvents::new(&[Group::Link]).context("joining rtnetlink's link announcements")?;
    let mut monitor = Monitor::start(args, &plan.pairs, verbosity)?;
    if let Some(path) = &args.test_tag_file {
        // Given the file, "no test" is known, and exported as such.
        monitor.test = Some(test_tag::read(path).unwrap_or_default());
    }
    monitor.refresh();
    for port in &monitor.ports {
        // The ready file promises that every port present is counted.
        if let Some(error) = port.attach_error() {
            return Err(
                UsageError::Argument(format!("cannot count {}: {error}", port.spec)).into(),
            );
        }
        if port.location().is_none() {
            let message = format!("{}: not found yet; counting once it appears", port.spec);
            warn!("{}", plan.about_port(&port.spec, &message));
        }
    }
    if args.cable_map {
        monitor
            .cables
            .map_now(&monitor.ports, &args.cable_ports, verbosity);
    }
    let logger = monitor.drops.take_logger();

    let local = tokio::task::LocalSet::new();
    runtime.block_on(local.run_until(async move {
        // Signal handlers go in before the ready file: from then on, Ctrl-C means "stop".
        let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut terminate =
            signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        if let Some(logger) = logger {
            crate::logging::forward_ebpf_logs(logger)?;
        }
        // SIGHUP (a closed terminal, `systemctl reload`) looks for the ports at once.
        let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
        // SIGUSR1: SPDK's run_test wrote the next test's name to the tag file.
        let mut next_test =
            signal(SignalKind::user_defined1()).context("installing SIGUSR1 handler")?;
        if let Some(path) = &args.ready_file {
            super::write_ready_file(path)?;
        }
        let bound = listener.local_addr().unwrap_or(args.metrics_addr);
        info!("serving metrics at http://{bound}/metrics");
        if args.metrics_addr.port() == 0 {
            // The port was the kernel's choice: whoever started tracer needs to learn it.
            let _ = output::print_line(&format!("serving metrics at http://{bound}/metrics"));
        }
        let monitor = Rc::new(RefCell::new(monitor));
        let connections = http::Connections::new(MAX_CONNECTIONS);
        let mut events = events
            .into_async()
            .context("waiting for link announcements")?;
        let mut refresh = tokio::time::interval(REFRESH_INTERVAL);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A look put off: a port's device left a namespace and may be arriving in another, or
        // a namespace being created is not mounted yet.
        let mut look_at: Option<Instant> = None;
        loop {
            let wake_at = [
                look_at,
                events.get_ref().next_retry().map(Instant::from_std),
            ]
            .into_iter()
            .flatten()
            .min();
            let put_off = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = refresh.tick() => {
                    events.get_mut().resync();
                    monitor.borrow_mut().refresh();
                }
                ready = events.readable_mut() => {
                    let mut ready = ready.context("waiting for link announcements")?;
                    let changes = ready.get_inner_mut().take();
                    ready.clear_ready();
                    let concern = monitor.borrow().concern(&changes);
                    log::trace!("announced: {changes:?}: {concern:?}");
                    match concern {
                        Concern::Now => {
                            look_at = None;
                            monitor.borrow_mut().refresh();
                        }
                        Concern::Soon => {
                            look_at.get_or_insert(Instant::now() + MOVE_SETTLE);
                        }
                        Concern::None => {}
                    }
                }
                () = put_off => {
                    let changes = events.get_mut().take();
                    if look_at.is_some_and(|at| at <= Instant::now())
                        || monitor.borrow().concern(&changes) != Concern::None
                    {
                        look_at = None;
                        monitor.borrow_mut().refresh();
                    }
                }
                _ = next_test.recv() => {
                    if let Some(path) = &args.test_tag_file {
                        let test = test_tag::read(path);
                        info!("SIGUSR1: test now {}", test.as_deref().unwrap_or("(none)"));
                        let mut monitor = monitor.borrow_mut();
                        monitor.test = Some(test.unwrap_or_default());
                        // A test starting or ending: its rules come or go.
                        monitor.spdk_rules.wake();
                    }
                }
                _ = hangup.recv() => {
                    info!("SIGHUP: looking for the ports now");
                    monitor.borrow_mut().refresh();
                    monitor.borrow().spdk_rules.wake();
                    if args.cable_map {
                        let monitor = monitor.borrow();
                        monitor.cables.map_in_background(&monitor.ports, &args.cable_ports, verbosity);
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let monitor = Rc::clone(&monitor);
                        let admitted = http::Connections::admit(&connections, |admitted| {
                            async move { serve(stream, admitted, &monitor).await }
                        });
                        if !admitted {
                            debug!("{MAX_CONNECTIONS} metrics requests being answered: closing {peer}'s");
                        }
                        // A connection closed to make room keeps its descriptor until the local
                        // set runs its aborted task: let it run before the next accept, or a
                        // backlog of connections (a slow machine, a flood) accepted in one go
                        // holds more descriptors than the limit allows for.
                        tokio::task::yield_now().await;
                    }
                    Err(err) => {
                        // Out of descriptors, say: pause rather than spin.
                        warn!("accepting a metrics connection: {err}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
            }
        }
        anyhow::Ok(())
    }))?;
    // Dropping the runtime's tasks drops the monitor: every link goes, the pinned maps stay.
    drop(local);
    info!(
        "stopped; the counts stay pinned in {}",
        args.pin_dir.display()
    );
    Ok(())
}

fn unpin(root: &Path) -> anyhow::Result<()> {
    let removed = pins::unpin(root)?;
    if removed.is_empty() {
        output::print_line(&format!("nothing pinned in {}", root.display()))?;
    }
    for path in removed {
        output::print_line(&format!("unpinned {}", path.display()))?;
    }
    Ok(())
}

/// One connection: one request, one response, closed.
async fn serve(stream: TcpStream, admitted: http::Admitted, monitor: &RefCell<Monitor>) {
    let head = http::read_head(&stream).await;
    admitted.spoke();
    let (request, response) = match head {
        Ok(http::Head::Complete(head)) => {
            let request = http::parse_request(&head);
            // Answered at once: the borrow never spans an await.
            let response = respond(monitor, request.as_ref());
            (request, response)
        }
        Ok(http::Head::TooLarge) => (None, Response::text(431, "request head over 16 KiB\n")),
        Ok(http::Head::Gone) => return,
        Err(err) => {
            log::debug!("reading a metrics request: {err}");
            return;
        }
    };
    let head_only = request.as_ref().is_some_and(|r| r.method == "HEAD");
    if let Err(err) = http::write_all(&stream, &response.encode(head_only)).await {
        log::debug!("answering a metrics request: {err}");
    }
}

fn respond(monitor: &RefCell<Monitor>, request: Option<&Request>) -> Response {
    let Some(request) = request else {
        return Response::text(400, "malformed request\n");
    };
    if request.method != "GET" && request.method != "HEAD" {
        return Response::text(405, "only GET and HEAD\n");
    }
    if request.path != "/metrics" {
        return Response::text(404, "tracer monitor serves /metrics only\n");
    }
    // Where the ports were at the last refresh; the counts are read from the maps now (no
    // namespace is entered and no file opened: a scrape costs map reads only).
    let monitor = monitor.borrow();
    match monitor.snapshot() {
        Ok(snapshot) => {
            let format = Format::negotiate(request.accept.as_deref());
            Response {
                status: 200,
                content_type: format.content_type(),
                body: metrics::exposition(&snapshot, format).into_bytes(),
            }
        }
        Err(err) => {
            warn!("reading the counters for a scrape: {err:#}");
            Response::text(500, "reading the counters failed; see tracer's log\n")
        }
    }
}
