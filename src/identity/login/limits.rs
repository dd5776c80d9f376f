//! Login attempt limits per user name and per source address (token buckets via governor).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, RateLimiter};

use crate::error::{Error, Result};

/// `burst` attempts, refilled evenly over `per`.
#[derive(Clone, Copy, Debug)]
pub struct Quota {
    pub burst: u32,
    pub per: Duration,
}

impl Quota {
    fn governor(self) -> governor::Quota {
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        let interval = self.per / burst.get();
        governor::Quota::with_period(interval.max(Duration::from_millis(1)))
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

pub struct LoginLimits {
    users: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
}

impl std::fmt::Debug for LoginLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginLimits")
    }
}

impl LoginLimits {
    pub fn new(user: Quota, address: Quota) -> LoginLimits {
        LoginLimits {
            users: RateLimiter::keyed(user.governor()),
            addresses: RateLimiter::keyed(address.governor()),
        }
    }

    /// Takes one attempt for `user` from `address`, or says how long to wait. The user name
    /// is limited whether or not it exists, so the limit reveals nothing.
    pub fn attempt(&self, user: &str, address: Option<IpAddr>) -> Result<()> {
        let clock = DefaultClock::default();
        if let Some(address) = address
            && let Err(not_until) = self.addresses.check_key(&address)
        {
            return Err(retry_after(not_until.wait_time_from(clock.now())));
        }
        if let Err(not_until) = self.users.check_key(&user.to_lowercase()) {
            return Err(retry_after(not_until.wait_time_from(clock.now())));
        }
        // Keyed limiters keep a bucket per key; drop the full ones now and then.
        if self.users.len() > 10_000 {
            self.users.retain_recent();
            self.addresses.retain_recent();
        }
        Ok(())
    }

    /// Takes one attempt from `address` alone (starting a single sign-on, which names no
    /// user), or says how long to wait.
    pub fn attempt_address(&self, address: Option<IpAddr>) -> Result<()> {
        let clock = DefaultClock::default();
        if let Some(address) = address
            && let Err(not_until) = self.addresses.check_key(&address)
        {
            return Err(retry_after(not_until.wait_time_from(clock.now())));
        }
        Ok(())
    }
}

fn retry_after(wait: Duration) -> Error {
    Error::TooManyRequests(wait.as_secs() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_the_burst_then_must_wait() {
        let limits = LoginLimits::new(
            Quota {
                burst: 3,
                per: Duration::from_secs(60),
            },
            Quota {
                burst: 100,
                per: Duration::from_secs(60),
            },
        );
        for _ in 0..3 {
            assert!(limits.attempt("Alice", None).is_ok());
        }
        match limits.attempt("alice", None) {
            Err(Error::TooManyRequests(secs)) => assert!((1..=21).contains(&secs), "{secs}"),
            other => panic!("expected a limit, got {other:?}"),
        }
        assert!(limits.attempt("bob", None).is_ok());
    }

    #[test]
    fn an_address_is_limited_across_user_names() {
        let limits = LoginLimits::new(
            Quota {
                burst: 100,
                per: Duration::from_secs(60),
            },
            Quota {
                burst: 2,
                per: Duration::from_secs(60),
            },
        );
        let address = Some(IpAddr::from([10, 0, 0, 1]));
        assert!(limits.attempt("a", address).is_ok());
        assert!(limits.attempt("b", address).is_ok());
        assert!(limits.attempt("c", address).is_err());
        assert!(
            limits
                .attempt("c", Some(IpAddr::from([10, 0, 0, 2])))
                .is_ok()
        );
        // Starting single sign-ons draws on the same per-address bucket.
        assert!(limits.attempt_address(address).is_err());
        assert!(
            limits
                .attempt_address(Some(IpAddr::from([10, 0, 0, 3])))
                .is_ok()
        );
    }
}
