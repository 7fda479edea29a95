//! Supervision, end to end in a namespace: when a long-lived part of the daemon stops on its
//! own (the control plane's swarm task ends, the ledger's autopilot panics, the data plane's
//! packet thread panics), the daemon notices
//! and exits non-zero within 5 s, naming the part, so that systemd restarts it. The faults are
//! injected with `WEFT_FAULT`, which only debug builds read. Needs root and iproute2; elsewhere
//! it prints why it is skipped.

mod support;

use std::time::{Duration, Instant};

use support::netns::{Lan, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(60);
/// How soon after a part stops the daemon must have exited.
const NOTICED: Duration = Duration::from_secs(5);

/// Starts one node with a fault injected into `part`, and checks it exits non-zero within
/// [`NOTICED`] of the fault, saying which part stopped.
fn a_stopped_part_ends_the_daemon(part: &str, named: &str) {
    let mut lan = Lan::new(1, WEFT);
    let token = lan.new_token();
    // No backtrace for the injected panic: the panic hook prints it before the task unwinds,
    // and symbolising a debug build's frames took longer than NOTICED on a loaded CI machine
    // (the test's own backtrace took 2.7 s there), so the daemon heard of the stop too late.
    lan.start_weft(
        0,
        &["--token", &token, "--no-dht"],
        &[("WEFT_FAULT", part), ("RUST_BACKTRACE", "0")],
    );
    lan.wait_api(0, DEADLINE);
    let process = lan.processes.len() - 1;
    wait_until(DEADLINE, "the injected fault", || {
        lan.processes[process]
            .log_text()
            .contains("fault injected")
            .then_some(())
    });
    let fault = Instant::now();
    let status = lan.processes[process]
        .wait_exit(NOTICED)
        .unwrap_or_else(|| panic!("weft still runs {NOTICED:?} after {part} stopped"));
    eprintln!(
        "{part}: exited {:?} after the fault with {status}",
        fault.elapsed()
    );
    assert!(
        !status.success(),
        "the exit status says something went wrong"
    );
    let log = lan.processes[process].log_text();
    assert!(
        log.contains(&format!("{named} stopped unexpectedly")),
        "the log names the part:\n{log}"
    );
}

#[test]
fn the_daemon_exits_non_zero_when_its_swarm_task_ends() {
    require_netns!();
    a_stopped_part_ends_the_daemon("swarm", "the control plane");
}

#[test]
fn the_daemon_exits_non_zero_when_a_ledger_task_panics() {
    require_netns!();
    a_stopped_part_ends_the_daemon("ledger", "the ledger's autopilot");
}

#[test]
fn the_daemon_exits_non_zero_when_its_packet_thread_panics() {
    require_netns!();
    a_stopped_part_ends_the_daemon("packets", "the data plane");
}
