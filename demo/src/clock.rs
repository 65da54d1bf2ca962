//! Time in the demo world.
//!
//! The simulation runs in latent time: a real number of days since `OBSERVATION_START`
//! 00:00. Wall-clock timestamps (microseconds since the Unix epoch, no time zone) keep the
//! calendar day of a latent time and bend its time of day through the diurnal profile
//! `HOUR_WEIGHTS`. The bend is monotone within a day, so the order of events and the side of
//! every day boundary (the feature cutoff, the end of the window) are kept, and a Poisson
//! process in latent time becomes one with a realistic daily rhythm on the wall clock.

use rand::Rng;

use super::params::HOUR_WEIGHTS;

/// Days from 1970-01-01 to `OBSERVATION_START` (2024-01-01).
pub(crate) const START_EPOCH_DAY: i64 = 19_723;
/// Length of the window in days: 2024-01-01 up to and including 2025-12-31.
pub(crate) const WINDOW_DAYS: f64 = 731.0;
/// Latent time of the cutoff instant: 2025-10-03 00:00, the first instant after the day
/// `FEATURE_CUTOFF` (2025-10-02, day 640 of the window).
pub(crate) const CUTOFF_T: f64 = 641.0;
/// Days from the cutoff instant to the end of the window.
pub(crate) const HORIZON_DAYS: f64 = WINDOW_DAYS - CUTOFF_T;

pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;
pub(crate) const MICROS_PER_HOUR: i64 = 3_600_000_000;
pub(crate) const MICROS_PER_MINUTE: i64 = 60_000_000;
pub(crate) const MICROS_PER_SECOND: i64 = 1_000_000;

/// Wall-clock microseconds of 00:00 on day `day` of the window.
pub(crate) fn day_start_us(day: i64) -> i64 {
    (START_EPOCH_DAY + day) * MICROS_PER_DAY
}

/// The first instant after the window (2026-01-01 00:00).
pub(crate) fn end_us() -> i64 {
    day_start_us(WINDOW_DAYS as i64)
}

/// The cutoff instant (2025-10-03 00:00): features see what happens before it, the churn label
/// looks at what happens from it to the end of the window.
pub(crate) fn cutoff_us() -> i64 {
    day_start_us(CUTOFF_T as i64)
}

/// Date32 value (days since the Unix epoch) of the calendar day of latent time `t`.
pub(crate) fn epoch_day(t: f64) -> i32 {
    (START_EPOCH_DAY + t.floor() as i64) as i32
}

/// A night-time instant (00:00-05:00) on the calendar day of latent time `t`, when fraudsters
/// like to work and honest customers sleep.
pub(crate) fn night_us<R: Rng>(t: f64, rng: &mut R) -> i64 {
    day_start_us(t.floor() as i64) + rng.random_range(0..5 * MICROS_PER_HOUR)
}

/// Maps latent time to wall-clock time with the diurnal profile.
pub(crate) struct Clock {
    /// Cumulative share of the day's activity at the start of each hour; `cum[24] == 1`.
    cum: [f64; 25],
}

impl Clock {
    pub(crate) fn new() -> Self {
        let total: f64 = HOUR_WEIGHTS.iter().sum();
        let mut cum = [0.0; 25];
        for (hour, weight) in HOUR_WEIGHTS.iter().enumerate() {
            cum[hour + 1] = cum[hour] + weight / total;
        }
        cum[24] = 1.0;
        Clock { cum }
    }

    /// Wall-clock microseconds of latent time `t`: the same calendar day, the fraction of the
    /// day spent mapped through the inverse of the cumulative activity profile.
    pub(crate) fn to_us(&self, t: f64) -> i64 {
        let day = t.floor();
        let share = (t - day).clamp(0.0, 1.0);
        // Number of inner hour boundaries at or below `share`: the hour it falls in.
        let hour = self.cum[1..24].partition_point(|&c| c <= share);
        let (lo, hi) = (self.cum[hour], self.cum[hour + 1]);
        let within = if hi > lo {
            ((share - lo) / (hi - lo)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let fraction = (hour as f64 + within) / 24.0;
        let start = day_start_us(day as i64);
        (start + (fraction * MICROS_PER_DAY as f64) as i64).min(start + MICROS_PER_DAY - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_keeps_the_day_and_the_order() {
        let clock = Clock::new();
        let mut last = i64::MIN;
        for i in 0..10_000 {
            let t = 3.0 + i as f64 / 10_000.0;
            let us = clock.to_us(t);
            assert!(us >= last, "monotone");
            assert!(us >= day_start_us(3) && us < day_start_us(4), "same day");
            last = us;
        }
    }

    #[test]
    fn diurnal_profile_is_quiet_at_night() {
        let clock = Clock::new();
        let night = (0..1000)
            .map(|i| clock.to_us(10.0 + i as f64 / 1000.0) - day_start_us(10))
            .filter(|us| *us < 5 * MICROS_PER_HOUR)
            .count();
        assert!(
            night < 60,
            "{night} of 1000 instants fall between 00:00 and 05:00"
        );
    }
}
