//! The output quota of a run: its folder measured every half second, sooner as it nears the
//! quota, and once more at the end.

use std::time::{Duration, Instant};

use sandbox_runner::{SandboxBackend, SandboxSpec};

/// A run's output quota: when to measure its folder next, and whether it is past the quota.
pub(crate) struct OutputQuota {
    quota: u64,
    clock: QuotaClock,
    /// Whether the folder could not be measured once already (which is said once per run).
    unmeasured: bool,
}

impl OutputQuota {
    pub(crate) fn new(quota: u64) -> Self {
        OutputQuota {
            quota,
            clock: QuotaClock::new(quota),
            unmeasured: false,
        }
    }

    /// How long to wait before the next measurement.
    pub(crate) fn next(&self) -> Duration {
        self.clock.next
    }

    /// Measures the folder: whether it is past the quota. One that cannot be measured is not
    /// (its quota is not enforced until it can be).
    pub(crate) async fn exceeded(
        &mut self,
        run: &str,
        backend: &dyn SandboxBackend,
        spec: &SandboxSpec,
    ) -> bool {
        let walk = Instant::now();
        match backend.output_usage(spec).await {
            Ok(used) => {
                self.clock.measured(used, walk);
                used > self.quota
            }
            Err(e) => {
                if !self.unmeasured {
                    self.unmeasured = true;
                    tracing::warn!(run, error = %e, "the output folder cannot be measured: its quota is not enforced until it can");
                }
                false
            }
        }
    }

    /// The measurement once the run ended (a quick writer can fill the folder between two
    /// measurements and exit): whether it is past the quota, `None` when it cannot be measured.
    pub(crate) async fn exceeded_at_end(
        &self,
        backend: &dyn SandboxBackend,
        spec: &SandboxSpec,
    ) -> Option<bool> {
        let used = backend.output_usage(spec).await.ok()?;
        Some(used > self.quota)
    }
}

/// When to measure a run's output folder next. Every `QUOTA_STEP_MAX` while it grows slowly;
/// sooner as it nears its quota at the rate it grows (half the time it would take to reach it),
/// so that a fast writer overshoots by less; never more often than `QUOTA_STEP_MIN`, nor than
/// every `QUOTA_WALK_SHARE` times the last measurement took (a folder of many files takes long
/// to walk, and the walk must not take the machine).
struct QuotaClock {
    quota: u64,
    last: Option<(std::time::Instant, u64)>,
    next: Duration,
}

const QUOTA_STEP_MAX: Duration = Duration::from_millis(500);
const QUOTA_STEP_MIN: Duration = Duration::from_millis(50);
const QUOTA_WALK_SHARE: u32 = 10;

impl QuotaClock {
    fn new(quota: u64) -> Self {
        QuotaClock {
            quota,
            last: None,
            next: QUOTA_STEP_MAX,
        }
    }

    /// A measurement that found `used` bytes; it started at `began` and ends now.
    fn measured(&mut self, used: u64, began: Instant) {
        let now = Instant::now();
        self.measured_at(used, began, now);
    }

    fn measured_at(&mut self, used: u64, began: Instant, now: Instant) {
        let floor = QUOTA_STEP_MIN.max((now - began) * QUOTA_WALK_SHARE);
        let mut next = QUOTA_STEP_MAX;
        if let Some((then, before)) = self.last {
            let secs = (now - then).as_secs_f64();
            if used > before && secs > 0.0 {
                let rate = (used - before) as f64 / secs;
                let left = self.quota.saturating_sub(used) as f64;
                next = next.min(Duration::from_secs_f64(left / rate / 2.0));
            }
        }
        self.next = next.max(floor);
        self.last = Some((now, used));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_output_folder_is_measured_sooner_as_it_nears_its_quota() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut q = QuotaClock::new(1024 * MIB);
        // A first measurement says nothing of the rate.
        q.measured_at(0, at(0), at(1));
        assert_eq!(q.next, QUOTA_STEP_MAX);
        // Slow growth, far from the quota: the longest step.
        q.measured_at(MIB, at(500), at(501));
        assert_eq!(q.next, QUOTA_STEP_MAX);
        // 400 MiB in half a second, 623 MiB left: reached in ~0.78 s, measured in ~0.39 s.
        q.measured_at(401 * MIB, at(1000), at(1001));
        assert!(q.next < Duration::from_millis(400) && q.next > Duration::from_millis(380));
        // Closer still at the same rate: the shortest step, no shorter.
        q.measured_at(1000 * MIB, at(1380), at(1381));
        assert_eq!(q.next, QUOTA_STEP_MIN);
        // Growth stopped: back to the longest step.
        q.measured_at(1000 * MIB, at(1431), at(1432));
        assert_eq!(q.next, QUOTA_STEP_MAX);
    }

    #[test]
    fn a_folder_slow_to_walk_is_measured_less_often() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut q = QuotaClock::new(1024 * MIB);
        q.measured_at(0, at(0), at(1));
        // Near the quota and growing fast, but each walk takes 30 ms: at most a tenth of the time.
        q.measured_at(1000 * MIB, at(100), at(130));
        assert_eq!(q.next, Duration::from_millis(300));
        // A walk of 200 ms: every 2 s, past the longest step.
        q.measured_at(1001 * MIB, at(500), at(700));
        assert_eq!(q.next, Duration::from_secs(2));
    }
}
