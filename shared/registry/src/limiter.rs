//! An adaptive request-rate limiter, one state per registry host (AIMD).
//!
//! Each host starts at its configured rate, or unlimited. A 429 pauses every request to that
//! host until its `Retry-After` has passed, and cuts the host's rate in half, at most once per
//! second, so that a burst of concurrent 429s counts as one signal. Each success then adds a
//! twentieth of the ceiling back until the rate is at the ceiling again. One throttled host
//! therefore slows down only itself, and recovers without anyone restarting anything. kpromo
//! instead pauses all work for 10 s.
//!
//! The ceiling of a host with a configured rate is that rate. A host without one has no ceiling
//! until it throttles; then its ceiling is what it admitted (the successful requests of the last
//! second, at least 10/s). After one signal it recovers to unlimited, as a hiccup deserves; after
//! a second within a minute the host has a limit, and the rate recovers to just below the
//! ceiling and stays there instead of running into the limit again. Every 30 s without a 429 a
//! learned ceiling is raised by a tenth, so a registry that allows more is found out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use ferry_model::Host;
use tokio::time::Instant;

#[derive(Clone, Debug, PartialEq)]
pub struct LimiterConfig {
    /// Requests per second per host; `None` is unlimited until the host throttles.
    pub max_rate: Option<f64>,
    /// Hosts with a rate of their own (`registries.hosts[].requests-per-second`).
    pub per_host: Vec<(Host, f64)>,
    /// The rate never drops below this.
    pub min_rate: f64,
    /// How long to pause a host after a 429 without `Retry-After`.
    pub default_pause: Duration,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self { max_rate: None, per_host: Vec::new(), min_rate: 0.5, default_pause: Duration::from_secs(1) }
    }
}

/// A throttled host without a configured rate is assumed to have managed at least this.
const UNLIMITED_FLOOR: f64 = 10.0;
/// 429s closer together than this are one signal.
const DECREASE_INTERVAL: Duration = Duration::from_secs(1);
/// Each success adds this share of the ceiling back.
const RECOVERY_SHARE: f64 = 0.05;
/// Request times kept to estimate the current rate.
const WINDOW: Duration = Duration::from_secs(1);
/// A learned ceiling is approached to this share, to stay clear of the limit.
const LEARNED_MARGIN: f64 = 0.95;
/// A learned ceiling is raised by a tenth after this long without a 429.
const PROBE_AFTER: Duration = Duration::from_secs(30);
/// A 429 this soon after the last signal means the host has a limit to learn.
const RELEARN_WITHIN: Duration = Duration::from_secs(60);
const WINDOW_CAP: usize = 10_000;
/// The longest a host is paused because it said its budget is spent (a 429's `Retry-After` is
/// honoured whatever it says; a window of hours is not waited out here).
const MAX_ADVISED_PAUSE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct HostState {
    /// `None`: unlimited.
    rate: Option<f64>,
    /// Where recovery stops.
    ceiling: Option<f64>,
    next_slot: Instant,
    paused_until: Instant,
    last_decrease: Option<Instant>,
    recent: VecDeque<Instant>,
    /// When requests succeeded, over the last [`WINDOW`]: what the host admits.
    admitted: VecDeque<Instant>,
    /// The ceiling was learned from the host's 429s (no configured rate).
    learned: bool,
}

/// Requests per second among `times`, dropping those older than [`WINDOW`].
fn rate_of(times: &mut VecDeque<Instant>, now: Instant) -> f64 {
    while times.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
        times.pop_front();
    }
    times.len() as f64 / WINDOW.as_secs_f64()
}

impl HostState {
    fn recent_rate(&mut self, now: Instant) -> f64 {
        rate_of(&mut self.recent, now)
    }
}

/// Shared by every request the process makes; cheap to call.
#[derive(Debug)]
pub struct Limiter {
    config: LimiterConfig,
    hosts: Mutex<HashMap<Host, HostState>>,
}

/// What the limiter currently believes about a host, for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostRate {
    pub rate: Option<f64>,
    pub paused_for: Duration,
}

impl LimiterConfig {
    /// The configured rate of `host`: its own, else the default.
    pub fn max_rate_of(&self, host: &Host) -> Option<f64> {
        self.per_host.iter().find(|(h, _)| h == host).map(|(_, r)| *r).or(self.max_rate)
    }
}

impl Limiter {
    pub fn new(config: LimiterConfig) -> Self {
        Self { config, hosts: Mutex::new(HashMap::new()) }
    }

    fn with_host<T>(&self, host: &Host, f: impl FnOnce(&mut HostState, Instant) -> T) -> T {
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update; the state is still a
        // valid set of numbers, so keep going with it.
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let max_rate = self.config.max_rate_of(host);
        let state = hosts.entry(host.clone()).or_insert_with(|| HostState {
            rate: max_rate,
            ceiling: max_rate,
            next_slot: now,
            paused_until: now,
            last_decrease: None,
            recent: VecDeque::new(),
            admitted: VecDeque::new(),
            learned: false,
        });
        f(state, now)
    }

    /// Waits until a request to `host` may be sent.
    pub async fn acquire(&self, host: &Host) {
        let at = self.with_host(host, |s, now| {
            let start = now.max(s.paused_until);
            let slot = match s.rate {
                None => start,
                Some(rate) => {
                    let slot = start.max(s.next_slot);
                    s.next_slot = slot + Duration::from_secs_f64(1.0 / rate);
                    slot
                }
            };
            if s.recent.len() >= WINDOW_CAP {
                s.recent.pop_front();
            }
            s.recent.push_back(slot);
            slot
        });
        if at > Instant::now() {
            tokio::time::sleep_until(at).await;
        }
    }

    /// Records a 429 from `host`.
    pub fn throttled(&self, host: &Host, retry_after: Option<Duration>) {
        let config = &self.config;
        let max_rate = config.max_rate_of(host);
        let rate = self.with_host(host, |s, now| {
            let pause = retry_after.unwrap_or(config.default_pause);
            s.paused_until = s.paused_until.max(now + pause);
            s.next_slot = s.next_slot.max(s.paused_until);
            if s.last_decrease.is_some_and(|t| now.duration_since(t) < DECREASE_INTERVAL) {
                return s.rate;
            }
            // A second signal within a minute of the last: the host has a limit, not a hiccup.
            let repeated = s.last_decrease.is_some_and(|t| now.duration_since(t) < RELEARN_WITHIN);
            s.last_decrease = Some(now);
            let admitted = rate_of(&mut s.admitted, now);
            let current = match s.rate {
                Some(rate) => rate,
                None if admitted > 0.0 => admitted,
                None => s.recent_rate(now).max(UNLIMITED_FLOOR),
            };
            if max_rate.is_none() {
                // What the host let through in the last second is where it throttles.
                s.learned |= repeated;
                s.ceiling = Some(if admitted > 0.0 { admitted } else { current }.max(UNLIMITED_FLOOR));
            } else if s.ceiling.is_none() {
                s.ceiling = max_rate;
            }
            s.rate = Some((current / 2.0).max(config.min_rate));
            s.rate
        });
        tracing::warn!(%host, ?retry_after, rate_per_second = ?rate, "registry throttled; slowing down");
    }

    /// Records a successful request to `host`.
    pub fn succeeded(&self, host: &Host) {
        let max_rate = self.config.max_rate_of(host);
        self.with_host(host, |s, now| {
            if s.admitted.len() >= WINDOW_CAP {
                s.admitted.pop_front();
            }
            s.admitted.push_back(now);
            let (Some(rate), Some(ceiling)) = (s.rate, s.ceiling) else { return };
            if s.learned {
                let cap = ceiling * LEARNED_MARGIN;
                s.rate = Some((rate + ceiling * RECOVERY_SHARE).min(cap));
                if s.last_decrease.is_some_and(|t| now.duration_since(t) >= PROBE_AFTER) {
                    s.ceiling = Some(ceiling * 1.1);
                    s.last_decrease = Some(now);
                }
                return;
            }
            let raised = rate + ceiling * RECOVERY_SHARE;
            if raised >= ceiling {
                s.rate = max_rate;
                s.ceiling = max_rate;
            } else {
                s.rate = Some(raised);
            }
        });
    }

    /// What a registry said of its budget on a successful answer (`RateLimit-Remaining` and
    /// `RateLimit-Reset`, Docker Hub's `ratelimit-remaining`): spent before the 429, not after.
    /// Nothing left: the host waits for the reset (at most [`MAX_ADVISED_PAUSE`]; a 429 would
    /// say the same, at the cost of a request). Some left: the requests are spread over the
    /// time to the reset, so the budget lasts until it refills. The rate is not cut as for a
    /// 429: this is information, not a refusal.
    pub fn advised(&self, host: &Host, remaining: u64, reset: Option<Duration>) {
        let config = &self.config;
        self.with_host(host, |s, now| {
            if remaining == 0 {
                let pause = reset.unwrap_or(config.default_pause).min(MAX_ADVISED_PAUSE);
                s.paused_until = s.paused_until.max(now + pause);
                s.next_slot = s.next_slot.max(s.paused_until);
                return;
            }
            let Some(reset) = reset.filter(|r| !r.is_zero()) else { return };
            let spread = (remaining as f64 / reset.as_secs_f64()).max(config.min_rate);
            if s.rate.is_none_or(|rate| spread < rate) {
                s.rate = Some(spread);
                // Recovery (each success) stops at the ceiling; without one it would never end.
                s.ceiling = s.ceiling.or(config.max_rate_of(host)).or(Some(spread * 2.0));
            }
        });
    }

    pub fn host_rate(&self, host: &Host) -> HostRate {
        self.with_host(host, |s, now| HostRate {
            rate: s.rate,
            paused_for: s.paused_until.saturating_duration_since(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host::parse("registry.example").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_the_host_and_halves_the_rate() {
        let limiter = Limiter::new(LimiterConfig { max_rate: Some(10.0), ..Default::default() });
        limiter.acquire(&host()).await;
        limiter.throttled(&host(), Some(Duration::from_secs(3)));
        let start = Instant::now();
        limiter.acquire(&host()).await;
        assert!(start.elapsed() >= Duration::from_secs(3), "waited {:?}", start.elapsed());
        assert_eq!(limiter.host_rate(&host()).rate, Some(5.0));
        // Another host is not affected.
        let other = Host::parse("other.example").unwrap();
        let start = Instant::now();
        limiter.acquire(&other).await;
        assert!(start.elapsed() < Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_pauses_the_host_before_any_429() {
        let limiter = Limiter::new(LimiterConfig::default());
        // 40 left for the next 10 s: 4 a second.
        limiter.advised(&host(), 40, Some(Duration::from_secs(10)));
        assert_eq!(limiter.host_rate(&host()).rate, Some(4.0));
        // Nothing left, reset in 3 s: the host waits, and its rate is not cut.
        limiter.advised(&host(), 0, Some(Duration::from_secs(3)));
        assert_eq!(limiter.host_rate(&host()).paused_for, Duration::from_secs(3));
        assert_eq!(limiter.host_rate(&host()).rate, Some(4.0));
        let start = Instant::now();
        limiter.acquire(&host()).await;
        assert!(start.elapsed() >= Duration::from_secs(3));
        // A reset hours away is not waited out here.
        limiter.advised(&host(), 0, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(limiter.host_rate(&host()).paused_for, MAX_ADVISED_PAUSE);
        // Plenty left: no slower than before.
        let other = Host::parse("other.example").unwrap();
        limiter.advised(&other, 5000, Some(Duration::from_secs(1)));
        assert_eq!(limiter.host_rate(&other).rate, Some(5000.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_429s_is_one_signal() {
        let limiter = Limiter::new(LimiterConfig { max_rate: Some(8.0), ..Default::default() });
        for _ in 0..5 {
            limiter.throttled(&host(), None);
        }
        assert_eq!(limiter.host_rate(&host()).rate, Some(4.0));
        tokio::time::advance(Duration::from_secs(2)).await;
        limiter.throttled(&host(), None);
        assert_eq!(limiter.host_rate(&host()).rate, Some(2.0), "a 429 a second later is a new signal");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_recovers_additively_to_the_ceiling() {
        let limiter = Limiter::new(LimiterConfig { max_rate: Some(8.0), ..Default::default() });
        limiter.throttled(&host(), None);
        assert_eq!(limiter.host_rate(&host()).rate, Some(4.0));
        limiter.succeeded(&host());
        assert_eq!(limiter.host_rate(&host()).rate, Some(4.4));
        for _ in 0..10 {
            limiter.succeeded(&host());
        }
        assert_eq!(limiter.host_rate(&host()).rate, Some(8.0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unlimited_host_learns_its_limit_and_stays_below_it() {
        let limiter = Limiter::new(LimiterConfig::default());
        // It admitted 20 requests in the last second, then throttled.
        for _ in 0..20 {
            limiter.acquire(&host()).await;
            limiter.succeeded(&host());
        }
        assert_eq!(limiter.host_rate(&host()).rate, None);
        limiter.throttled(&host(), Some(Duration::from_millis(10)));
        assert_eq!(limiter.host_rate(&host()).rate, Some(10.0), "half of the 20/s it admitted");
        for _ in 0..40 {
            limiter.succeeded(&host());
        }
        assert_eq!(limiter.host_rate(&host()).rate, None, "one signal is a hiccup: unlimited again");
        // It throttles again within the minute, having admitted 20 in the last second.
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..20 {
            limiter.succeeded(&host());
        }
        limiter.throttled(&host(), Some(Duration::from_millis(10)));
        assert_eq!(limiter.host_rate(&host()).rate, Some(10.0));
        for _ in 0..40 {
            limiter.succeeded(&host());
        }
        assert_eq!(limiter.host_rate(&host()).rate, Some(19.0), "just below what it admitted, and it stays");
        // After 30 s without a 429, a tenth more is tried.
        tokio::time::advance(Duration::from_secs(31)).await;
        limiter.succeeded(&host());
        for _ in 0..40 {
            limiter.succeeded(&host());
        }
        let rate = limiter.host_rate(&host()).rate.unwrap();
        assert!((rate - 22.0 * 0.95).abs() < 1e-9, "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_at_the_rate() {
        let limiter = Limiter::new(LimiterConfig { max_rate: Some(10.0), ..Default::default() });
        let start = Instant::now();
        for _ in 0..21 {
            limiter.acquire(&host()).await;
        }
        // 21 requests at 10/s take about 2 s (the first is immediate).
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1900) && elapsed <= Duration::from_millis(2100),
            "{elapsed:?}"
        );
    }
}
