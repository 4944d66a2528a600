//! Nothing stays attached after tracer exits, however it exits.

use tracer_tests::{End, Lab, check, kernel_at_least, tc_programs};

/// (XDP attached?, names of the tc programs on ingress and egress) on one lab end.
fn attachments(end: &End) -> (bool, Vec<String>) {
    let link = check(end.exec("ip").args(["link", "show", "dev", &end.interface]));
    let xdp = String::from_utf8_lossy(&link.stdout).contains("xdp");
    let mut tc = tc_programs(end, true);
    tc.extend(tc_programs(end, false));
    (xdp, tc)
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
        let (xdp, tc) = attachments(end);
        assert!(!xdp, "XDP left on {} after {how}", end.spec());
        assert!(
            tc.is_empty(),
            "tc programs left on {} after {how}: {tc:?}",
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
        if signal == libc::SIGKILL && !kernel_at_least(6, 6) {
            // Without tcx, a filter holds its program: after a SIGKILL the clsact qdisc tracer
            // added stays, with tracer's filters, as the README says. Removing the qdisc
            // removes them.
            for end in [&lab.initiator, &lab.target] {
                check(
                    end.exec("tc")
                        .args(["qdisc", "del", "dev", &end.interface, "clsact"]),
                );
            }
        }
        assert_detached(&lab, how);
    }
}

/// Before tcx (6.6), tracer adds the clsact qdisc its filters need, and removes it again: the
/// port is left with the qdiscs it had.
#[test]
fn the_clsact_qdisc_tracer_adds_is_removed() {
    let lab = Lab::up("cls");
    let qdiscs = |end: &End| {
        String::from_utf8_lossy(
            &check(
                end.exec("tc")
                    .args(["qdisc", "show", "dev", &end.interface]),
            )
            .stdout,
        )
        .into_owned()
    };
    let before = qdiscs(&lab.target);
    let run = lab.counters();
    let during = qdiscs(&lab.target);
    assert_eq!(
        during.contains("clsact"),
        !kernel_at_least(6, 6),
        "qdiscs while attached: {during}"
    );
    assert!(run.stop_with(libc::SIGINT).status.success());
    assert_eq!(qdiscs(&lab.target), before, "qdiscs after exit");
}
