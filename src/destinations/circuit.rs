//! The circuit breaker's gate and the slow lane, decided without I/O: what
//! to do with a delivery given its destination's circuit (as stored in D1).

use crate::limits::MAX_QUEUE_DELAY_SECONDS;

/// Defaults of the circuit breaker (`CIRCUIT_FAILURES`, `CIRCUIT_PROBE_SECONDS`).
pub const DEFAULT_CIRCUIT_FAILURES: u32 = 10;
pub const DEFAULT_CIRCUIT_PROBE_SECONDS: u32 = 60;

/// The longest a held delivery waits before it looks at the circuit again, in
/// probe intervals (4 minutes with the default interval): once a probe closes
/// the circuit, every held delivery flows within that.
pub const MAX_HOLD_PROBES: u32 = 4;

/// The deliveries a half-open circuit lets through per probe interval. One
/// probe can be an event the destination refuses for reasons of its own (a
/// poison event), and so can the next: with one probe an interval, such events
/// kept the circuit open while healthy ones waited behind them. Each probe is
/// an attempt of its own delivery, on its own schedule, so poison events die
/// as they would, and the first success closes the circuit.
pub const HALF_OPEN_PROBES: u32 = 3;

/// When a destination's circuit opens, and how often it is probed then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// Consecutive failed attempts (no answer, 408, 429, 5xx) that open it.
    pub failures: u32,
    /// While open, `HALF_OPEN_PROBES` deliveries are tried per this many seconds.
    pub probe_seconds: u32,
}

/// A destination's circuit, as stored (`circuits` in D1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Circuit {
    pub open: bool,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// While open: when the next probe may go, Unix seconds.
    pub probe_at: i64,
    /// Its deliveries go to the slow lane until then (Unix seconds): set by
    /// each failed or slow attempt, so one success does not bring a flaky
    /// destination back among the healthy ones.
    pub slow_until: i64,
}

/// How long a failed attempt (or one slower than `SLOW_ATTEMPT_MS`) keeps a destination in the slow lane.
pub const SLOW_LANE_QUIET_SECONDS: i64 = 600;

/// A successful attempt slower than this counts as slow.
pub const SLOW_ATTEMPT_MS: u64 = 2_000;

/// True when `circuit`'s destination belongs in the slow lane at `now`: it is
/// failing, or failed or was slow within `SLOW_LANE_QUIET_SECONDS`.
pub fn in_slow_lane(circuit: Circuit, now: i64) -> bool {
    circuit.failures > 0 || circuit.slow_until > now
}

/// What to do with a delivery, given its destination's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed: attempt it.
    Send,
    /// Open and due for a probe: attempt it if this delivery wins one of the interval's probes.
    Probe,
    /// Open: put it back, unattempted, for this many seconds.
    Hold(u32),
}

/// The gate of a delivery held `held` times already. A held delivery comes
/// back at the next probe time, later each time it is held (doubling, at most
/// `MAX_HOLD_PROBES` intervals), so a long outage costs few queue operations,
/// and it flows again at most that long after a probe closes the circuit.
pub fn gate(circuit: Circuit, policy: CircuitPolicy, now: i64, held: u32) -> Gate {
    if !circuit.open {
        return Gate::Send;
    }
    if now >= circuit.probe_at {
        return Gate::Probe;
    }
    let until_probe = u32::try_from(circuit.probe_at.saturating_sub(now)).unwrap_or(u32::MAX);
    let backoff = policy.probe_seconds.saturating_mul(1u32 << held.min(16));
    let cap = policy.probe_seconds.saturating_mul(MAX_HOLD_PROBES).min(MAX_QUEUE_DELAY_SECONDS);
    Gate::Hold(until_probe.max(backoff).clamp(1, cap.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_or_recently_slow_destination_stays_in_the_slow_lane() {
        assert!(!in_slow_lane(Circuit::default(), 1000));
        assert!(in_slow_lane(Circuit { failures: 1, ..Circuit::default() }, 1000));
        assert!(in_slow_lane(Circuit { slow_until: 1001, ..Circuit::default() }, 1000), "a success does not end the quiet period");
        assert!(!in_slow_lane(Circuit { slow_until: 1000, ..Circuit::default() }, 1000));
    }

    #[test]
    fn the_circuit_holds_deliveries_until_a_probe_is_due() {
        let policy = CircuitPolicy { failures: 3, probe_seconds: 60 };
        assert_eq!(gate(Circuit::default(), policy, 1000, 0), Gate::Send);
        let open = Circuit { open: true, failures: 3, probe_at: 1060, ..Circuit::default() };
        assert_eq!(gate(open, policy, 1060, 0), Gate::Probe);
        assert_eq!(gate(open, policy, 1000, 0), Gate::Hold(60));
        assert_eq!(gate(open, policy, 1050, 0), Gate::Hold(60), "at least one probe interval");
        assert_eq!(gate(open, policy, 1000, 1), Gate::Hold(120));
        assert_eq!(gate(open, policy, 1000, 2), Gate::Hold(240));
        assert_eq!(gate(open, policy, 1000, 3), Gate::Hold(240), "at most four intervals");
        assert_eq!(gate(open, policy, 1000, u32::MAX), Gate::Hold(240));
        let slow = CircuitPolicy { failures: 3, probe_seconds: 3600 };
        assert_eq!(gate(Circuit { open: true, failures: 3, probe_at: 4600, ..Circuit::default() }, slow, 1000, 5), Gate::Hold(14_400));
        assert_eq!(
            gate(
                Circuit { open: true, failures: 3, probe_at: 4600, ..Circuit::default() },
                CircuitPolicy { failures: 3, probe_seconds: 86_400 },
                1000,
                5
            ),
            Gate::Hold(MAX_QUEUE_DELAY_SECONDS)
        );
        let fast = CircuitPolicy { failures: 1, probe_seconds: 1 };
        assert_eq!(gate(Circuit { open: true, failures: 1, probe_at: 1001, ..Circuit::default() }, fast, 1000, 0), Gate::Hold(1));
        assert_eq!(gate(Circuit { open: true, failures: 1, probe_at: 1001, ..Circuit::default() }, fast, 1000, 9), Gate::Hold(4));
        assert_eq!(gate(Circuit { open: true, failures: 1, probe_at: i64::MAX, ..Circuit::default() }, fast, i64::MIN, 0), Gate::Hold(4));
    }
}
