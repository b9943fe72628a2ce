//! Load-based pricing: the price per CU a request is quoted when it arrives.
//!
//! A node's price floats with its load (DESIGN.md section 8): at idle it is
//! the base price; it rises linearly with the sequences already running or
//! waiting, up to `surge_percent` above the base once they fill every
//! generation slot, and stays there however long the queue grows. The quote
//! is fixed for the request: the credit held before any work, the charge
//! recorded with the receipt and the `price` of the answer all use it.

/// The pricing rule of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pricing {
    /// Thousandths of a CU charged per CU served, at idle.
    pub(crate) base_milli_per_cu: u64,
    /// How far above the base the price goes at full load, in percent
    /// (0: a fixed price).
    pub(crate) surge_percent: u64,
}

impl Pricing {
    /// The price for a request that finds `busy` sequences running or
    /// queued on a node generating at most `capacity` together:
    /// `base + ⌊surge% of base⌋ × min(busy, capacity) / capacity`, rounded
    /// down, saturating at `u64::MAX`.
    pub(crate) fn quote(&self, busy: usize, capacity: usize) -> u64 {
        let capacity = capacity.max(1) as u128;
        let load = (busy as u128).min(capacity);
        // At most (2^64 - 1)^2 / 100: fits in u128.
        let full = u128::from(self.base_milli_per_cu) * u128::from(self.surge_percent) / 100;
        // full × load / capacity without forming full × load (load <= capacity).
        let extra = full / capacity * load + full % capacity * load / capacity;
        let price = u128::from(self.base_milli_per_cu).saturating_add(extra);
        u64::try_from(price).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::Pricing;

    #[test]
    fn the_price_rises_with_load_and_stops_at_the_surge() {
        let p = Pricing {
            base_milli_per_cu: 1000,
            surge_percent: 100,
        };
        assert_eq!(p.quote(0, 8), 1000, "idle: the base price");
        assert_eq!(p.quote(2, 8), 1250);
        assert_eq!(p.quote(4, 8), 1500);
        assert_eq!(p.quote(8, 8), 2000, "every slot taken: base + 100%");
        assert_eq!(
            p.quote(40, 8),
            2000,
            "a long queue does not raise it further"
        );
        let quotes: Vec<u64> = (0..=8).map(|b| p.quote(b, 8)).collect();
        assert!(quotes.windows(2).all(|w| w[0] <= w[1]), "{quotes:?}");
    }

    #[test]
    fn no_surge_is_a_fixed_price_and_extremes_do_not_overflow() {
        let fixed = Pricing {
            base_milli_per_cu: 1234,
            surge_percent: 0,
        };
        assert!((0..20).all(|b| fixed.quote(b, 4) == 1234));
        let huge = Pricing {
            base_milli_per_cu: u64::MAX,
            surge_percent: u64::MAX,
        };
        assert_eq!(huge.quote(0, 1), u64::MAX);
        assert_eq!(huge.quote(usize::MAX, 1), u64::MAX);
        let free = Pricing {
            base_milli_per_cu: 0,
            surge_percent: 500,
        };
        assert_eq!(free.quote(9, 1), 0, "a free node stays free");
        assert_eq!(
            Pricing {
                base_milli_per_cu: 1000,
                surge_percent: 50,
            }
            .quote(1, 0),
            1500,
            "a capacity of 0 counts as 1"
        );
    }
}
