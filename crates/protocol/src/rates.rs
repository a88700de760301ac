//! A provider's posted rates: what it asks per CPU core-hour, per GiB-hour of memory and per
//! GPU-hour (by model or family, with a default), published in its on-chain profile.
//!
//! One pricing rule for everyone: the agent bids [`Rates::price_per_hour`] of its own rates,
//! the ledger refuses a bid above it (`bid_above_posted_price`), and the market explainer and
//! `gpunet job quote` show it to tenants before they submit. Pure integer arithmetic: the sum
//! of the parts over a common denominator, rounded up to the micro-unit once, at the end.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::resources::{MAX_GPU_NAME_BYTES, check_name};
use crate::{Amount, Capacity, Resources, ShapeError};

/// Most GPU models or families one provider may price separately.
pub const MAX_GPU_RATES: usize = 16;

/// Thousandths of a core in one core.
const MILLIS_PER_CORE: u128 = 1_000;
/// MiB in one GiB.
const MIB_PER_GIB: u128 = 1_024;

/// Hourly rates (usd). [`Rates::default`] is 0.10 per CPU core, 0.01 per GiB of memory and
/// 2.00 per GPU.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Rates {
    pub per_cpu_core_hour: Amount,
    pub per_memory_gib_hour: Amount,
    /// Price per GPU by model (`h100-80gb`) or family (`h100`); a model entry wins over its
    /// family's. At most [`MAX_GPU_RATES`] entries.
    pub per_gpu_hour: BTreeMap<String, Amount>,
    /// Price per GPU whose model and family are not in `per_gpu_hour`.
    pub default_per_gpu_hour: Amount,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            per_cpu_core_hour: Amount::from_micros(100_000),
            per_memory_gib_hour: Amount::from_micros(10_000),
            per_gpu_hour: BTreeMap::new(),
            default_per_gpu_hour: Amount::from_micros(2_000_000),
        }
    }
}

impl Rates {
    /// Checks the GPU entries' number and names; the ledger calls this on every registration.
    pub fn validate(&self) -> Result<(), ShapeError> {
        if self.per_gpu_hour.len() > MAX_GPU_RATES {
            return Err(ShapeError::Invalid {
                field: "rates.per_gpu_hour",
                why: format!("at most {MAX_GPU_RATES} GPU models or families"),
            });
        }
        for name in self.per_gpu_hour.keys() {
            check_name("rates.per_gpu_hour", name, MAX_GPU_NAME_BYTES)?;
        }
        Ok(())
    }

    /// The hourly rate of one GPU in `capacity.gpus[slot]`; `None` for a slot that is not there.
    pub fn gpu_rate(&self, capacity: &Capacity, slot: u32) -> Option<Amount> {
        let gpu = capacity.gpus.get(slot as usize)?;
        Some(
            self.per_gpu_hour
                .get(&gpu.model)
                .or_else(|| self.per_gpu_hour.get(&gpu.family))
                .copied()
                .unwrap_or(self.default_per_gpu_hour),
        )
    }

    /// The hourly price of `req` run on the GPUs `gpu_slots` of `capacity`: the sum of its
    /// parts, rounded up to the micro-unit once, and never less than one micro-unit (the
    /// ledger refuses a zero bid, so a free offer asks the smallest price). `None` if a slot is
    /// not in `capacity` or the price does not fit in an [`Amount`].
    pub fn price_per_hour(
        &self,
        req: &Resources,
        capacity: &Capacity,
        gpu_slots: &[u32],
    ) -> Option<Amount> {
        // Everything over the common denominator (millicores × MiB-per-GiB) so that rounding
        // happens once.
        let den = MILLIS_PER_CORE * MIB_PER_GIB;
        let cpu = u128::from(self.per_cpu_core_hour.micros())
            .checked_mul(u128::from(req.cpu_millis))?
            .checked_mul(MIB_PER_GIB)?;
        let memory = u128::from(self.per_memory_gib_hour.micros())
            .checked_mul(u128::from(req.memory_mib))?
            .checked_mul(MILLIS_PER_CORE)?;
        let mut gpus: u128 = 0;
        for &slot in gpu_slots {
            let price = self.gpu_rate(capacity, slot)?;
            gpus = gpus.checked_add(u128::from(price.micros()))?;
        }
        let num = cpu
            .checked_add(memory)?
            .checked_add(gpus.checked_mul(den)?)?;
        let micros = num.div_ceil(den).max(1);
        u64::try_from(micros).ok().map(Amount::from_micros)
    }
}

/// Seconds a `deposit` pays for at `price_per_hour`, rounded down; `None` for a zero price.
pub fn deposit_lasts_secs(deposit: Amount, price_per_hour: Amount) -> Option<u64> {
    if price_per_hour.is_zero() {
        return None;
    }
    let secs = u128::from(deposit.micros()) * 3_600 / u128::from(price_per_hour.micros());
    Some(u64::try_from(secs).unwrap_or(u64::MAX))
}

/// The least deposit that pays `max_price_per_hour` for the whole of `max_duration_secs`
/// (rounded up to the micro-unit); `None` if it does not fit in an [`Amount`].
pub fn min_deposit(max_price_per_hour: Amount, max_duration_secs: u64) -> Option<Amount> {
    let micros =
        (u128::from(max_price_per_hour.micros()) * u128::from(max_duration_secs)).div_ceil(3_600);
    u64::try_from(micros).ok().map(Amount::from_micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GpuRequirement, GpuSlot};

    fn capacity() -> Capacity {
        Capacity {
            cpu_millis: 16_000,
            memory_mib: 65_536,
            disk_mib: 100_000,
            gpus: vec![
                GpuSlot {
                    model: "h100-80gb".into(),
                    family: "h100".into(),
                    vram_mib: 81_559,
                },
                GpuSlot {
                    model: "a100-40gb".into(),
                    family: "a100".into(),
                    vram_mib: 40_960,
                },
            ],
        }
    }

    fn req(cpu_millis: u32, memory_mib: u64, gpus: u32) -> Resources {
        Resources {
            cpu_millis,
            memory_mib,
            disk_mib: 0,
            gpu: GpuRequirement {
                count: gpus,
                ..GpuRequirement::default()
            },
        }
    }

    fn check(rates: &Rates, r: Resources, slots: &[u32], expected: &str) {
        let got = rates
            .price_per_hour(&r, &capacity(), slots)
            .expect("prices");
        assert_eq!(got.to_string(), expected, "{r:?} on {slots:?}");
    }

    #[test]
    fn default_rates_sum_cpu_memory_and_gpus() {
        let p = Rates::default();
        // 1 core, 1 GiB: 0.10 + 0.01.
        check(&p, req(1_000, 1_024, 0), &[], "0.11");
        // 2.5 cores, 4 GiB, one GPU: 0.25 + 0.04 + 2.00.
        check(&p, req(2_500, 4_096, 1), &[0], "2.29");
        check(&p, req(1_000, 1_024, 2), &[0, 1], "4.11");
    }

    #[test]
    fn the_sum_is_rounded_up_to_the_micro_unit_once() {
        let p = Rates::default();
        // 1 millicore = 0.0001 usd/h = 100 micros exactly; 1 MiB = 10000/1024 = 9.765625 micros.
        check(&p, req(1, 1, 0), &[], "0.00011");
        // 3 MiB = 29.296875 micros → 30 with the 100 micros of CPU: 129.296875 → 130.
        check(&p, req(1, 3, 0), &[], "0.00013");
    }

    #[test]
    fn free_rates_still_ask_one_micro_unit() {
        let free = Rates {
            per_cpu_core_hour: Amount::ZERO,
            per_memory_gib_hour: Amount::ZERO,
            per_gpu_hour: BTreeMap::new(),
            default_per_gpu_hour: Amount::ZERO,
        };
        check(&free, req(1_000, 1_024, 1), &[0], "0.000001");
    }

    #[test]
    fn gpu_rates_go_by_model_then_family_then_default() {
        let mut p = Rates::default();
        p.per_gpu_hour
            .insert("h100".into(), Amount::from_micros(3_000_000));
        check(&p, req(1_000, 0, 1), &[0], "3.10");
        p.per_gpu_hour
            .insert("h100-80gb".into(), Amount::from_micros(3_500_000));
        check(&p, req(1_000, 0, 1), &[0], "3.60");
        check(&p, req(1_000, 0, 1), &[1], "2.10");
    }

    #[test]
    fn unknown_slots_and_overflow_give_no_price() {
        let p = Rates::default();
        assert_eq!(p.price_per_hour(&req(1, 1, 1), &capacity(), &[7]), None);
        let huge = Rates {
            per_cpu_core_hour: Amount::MAX,
            ..Rates::default()
        };
        assert_eq!(
            huge.price_per_hour(&req(u32::MAX, 1, 0), &capacity(), &[]),
            None
        );
    }

    #[test]
    fn too_many_or_badly_named_gpu_rates_are_refused_by_field() {
        let mut p = Rates::default();
        p.per_gpu_hour.insert("H100".into(), Amount::ZERO);
        let err = p.validate().expect_err("upper case").to_string();
        assert!(err.starts_with("rates.per_gpu_hour:"), "{err}");
        let mut p = Rates::default();
        for i in 0..=MAX_GPU_RATES {
            p.per_gpu_hour.insert(format!("gpu-{i}"), Amount::ZERO);
        }
        assert!(p.validate().is_err());
    }

    #[test]
    fn the_minimum_deposit_pays_the_max_price_for_the_whole_duration() {
        let price = Amount::from_micros(2_500_000);
        assert_eq!(
            min_deposit(price, 3_600),
            Some(Amount::from_micros(2_500_000))
        );
        // Ten minutes at 2.50/h: 0.416666…, rounded up.
        assert_eq!(min_deposit(price, 600), Some(Amount::from_micros(416_667)));
        assert_eq!(
            deposit_lasts_secs(Amount::from_micros(416_667), price),
            Some(600)
        );
        assert_eq!(deposit_lasts_secs(price, Amount::ZERO), None);
    }
}
