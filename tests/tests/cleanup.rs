//! Nothing stays attached after tracer exits, however it exits.

use aya::programs::{SchedClassifier, TcAttachType};
use tracer_tests::{End, Lab, check, in_netns};

/// (XDP attached?, names of the tcx programs on ingress and egress) on one lab end.
fn attachments(end: &End) -> (bool, Vec<String>) {
    let link = check(end.exec("ip").args(["link", "show", "dev", &end.interface]));
    let xdp = String::from_utf8_lossy(&link.stdout).contains("xdp");
    let interface = end.interface.clone();
    let tcx = in_netns(&end.netns, move || {
        let mut names = Vec::new();
        for hook in [TcAttachType::Ingress, TcAttachType::Egress] {
            let (_, programs) = SchedClassifier::query_tcx(&interface, hook).expect("querying tcx");
            names.extend(
                programs
                    .iter()
                    .map(|program| program.name_as_str().unwrap_or_default().to_owned()),
            );
        }
        names
    })
    .join()
    .expect("query thread");
    (xdp, tcx)
}

/// tracer's programs are on both ends: `xdp` on ingress, else tc; tc on egress.
fn assert_attached(lab: &Lab, xdp_ingress: bool) {
    for end in [&lab.initiator, &lab.target] {
        let (xdp, tcx) = attachments(end);
        assert_eq!(xdp, xdp_ingress, "XDP on {} while tracer runs", end.spec());
        let tc_ingress = tcx.iter().any(|name| name.starts_with("tracer_ingress"));
        assert_eq!(
            tc_ingress,
            !xdp_ingress,
            "tc ingress on {}: {tcx:?}",
            end.spec()
        );
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
    for (signal, how, hook) in [
        (libc::SIGINT, "Ctrl-C", "tc"),
        (libc::SIGTERM, "SIGTERM", "tc"),
        (libc::SIGKILL, "SIGKILL", "tc"),
        (libc::SIGINT, "Ctrl-C", "xdp"),
        (libc::SIGKILL, "SIGKILL", "xdp"),
    ] {
        let run = lab.counters_with(&["--ingress-hook", hook]);
        assert_attached(&lab, hook == "xdp");
        let out = run.stop_with(signal);
        if signal != libc::SIGKILL {
            assert!(out.status.success(), "tracer after {how}: {}", out.status);
        }
        assert_detached(&lab, how);
    }
}
