//! Nothing stays attached after tracer exits, however it exits.

use aya::programs::{SchedClassifier, TcAttachType};
use tracer_tests::{End, Lab, check, in_netns};

/// (XDP attached?, names of the tcx egress programs) on one lab end.
fn attachments(end: &End) -> (bool, Vec<String>) {
    let link = check(end.exec("ip").args(["link", "show", "dev", &end.interface]));
    let xdp = String::from_utf8_lossy(&link.stdout).contains("xdp");
    let interface = end.interface.clone();
    let tcx = in_netns(&end.netns, move || {
        let (_, programs) = SchedClassifier::query_tcx(&interface, TcAttachType::Egress)
            .expect("querying tcx egress");
        programs
            .iter()
            .map(|program| program.name_as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    })
    .join()
    .expect("query thread");
    (xdp, tcx)
}

fn assert_attached(lab: &Lab) {
    for end in [&lab.initiator, &lab.target] {
        let (xdp, tcx) = attachments(end);
        assert!(xdp, "no XDP program on {} while tracer runs", end.spec());
        assert!(
            tcx.iter().any(|name| name.starts_with("tracer_egress")),
            "no tcx egress program on {}: {tcx:?}",
            end.spec()
        );
    }
}

fn assert_detached(lab: &Lab, how: &str) {
    for end in [&lab.initiator, &lab.target] {
        let (xdp, tcx) = attachments(end);
        assert!(!xdp, "XDP left on {} after {how}", end.spec());
        assert!(
            tcx.is_empty(),
            "tcx programs left on {} after {how}: {tcx:?}",
            end.spec()
        );
    }
}

#[test]
fn nothing_left_after_sigint_sigterm_or_sigkill() {
    let lab = Lab::up("cln");
    for (signal, how) in [
        (libc::SIGINT, "Ctrl-C"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGKILL, "SIGKILL"),
    ] {
        let run = lab.counters();
        assert_attached(&lab);
        let out = run.stop_with(signal);
        if signal != libc::SIGKILL {
            assert!(out.status.success(), "tracer after {how}: {}", out.status);
        }
        assert_detached(&lab, how);
    }
}
