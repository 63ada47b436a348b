//! The quotas of a run's writable volumes (work area, output folder): each measured every
//! half second, sooner as it nears its quota, and once more at the end. A volume holding what
//! cannot be measured (a folder the run made unreadable to the walk, a tree too deep) is past
//! its quota: it counts against the run, never for it.

use std::time::{Duration, Instant};

use sandbox_runner::{SandboxBackend, SandboxSpec, Usage, Volume};

/// The quota of one of a run's volumes: when to measure it next, and whether it is past.
pub(crate) struct VolumeQuota {
    volume: Volume,
    quota: u64,
    clock: QuotaClock,
    /// When it is measured next.
    due: Instant,
    /// Whether the volume could not be looked at once already (which is said once per run).
    unmeasured: bool,
}

impl VolumeQuota {
    pub(crate) fn new(volume: Volume, quota: u64) -> Self {
        let clock = QuotaClock::new(quota);
        VolumeQuota {
            volume,
            quota,
            due: Instant::now() + clock.next,
            clock,
            unmeasured: false,
        }
    }

    /// How long to wait before the next measurement.
    pub(crate) fn next(&self) -> Duration {
        self.due.saturating_duration_since(Instant::now())
    }

    /// Measures the volume when it is due: why it is past the quota, if it is. One that cannot
    /// be looked at (the engine or its host cannot say) is not past it (its quota is not
    /// enforced until it can be); one that holds what cannot be measured is.
    pub(crate) async fn exceeded(
        &mut self,
        run: &str,
        backend: &dyn SandboxBackend,
        spec: &SandboxSpec,
    ) -> Option<String> {
        if self.next() > Duration::ZERO {
            return None;
        }
        let walk = Instant::now();
        let over = match backend.usage(spec, self.volume).await {
            Ok(Usage::Bytes(used)) => {
                self.clock.measured(used, walk);
                self.past(&Usage::Bytes(used))
            }
            Ok(u @ Usage::Unmeasurable(_)) => self.past(&u),
            Err(e) => {
                if !self.unmeasured {
                    self.unmeasured = true;
                    tracing::warn!(run, volume = self.volume.label(), error = %e, "a volume cannot be measured: its quota is not enforced until it can");
                }
                None
            }
        };
        self.due = Instant::now() + self.clock.next;
        over
    }

    /// The measurement once the run ended (a quick writer can fill the volume between two
    /// measurements and exit): why it is past the quota, if it is; `None` too when it cannot be
    /// looked at.
    pub(crate) async fn exceeded_at_end(
        &self,
        backend: &dyn SandboxBackend,
        spec: &SandboxSpec,
    ) -> Option<String> {
        let used = backend.usage(spec, self.volume).await.ok()?;
        self.past(&used)
    }

    fn past(&self, used: &Usage) -> Option<String> {
        let what = self.volume.label();
        match used {
            Usage::Bytes(n) if *n > self.quota => Some(format!(
                "the {what} holds {n} bytes, past its quota of {}",
                self.quota
            )),
            Usage::Bytes(_) => None,
            Usage::Unmeasurable(why) => Some(format!(
                "the {what} holds what cannot be measured, which counts as past its quota: {why}"
            )),
        }
    }
}

/// When to measure a run's volume next. Every `QUOTA_STEP_MAX` while it grows slowly;
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
    fn a_volume_is_measured_sooner_as_it_nears_its_quota() {
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
