//! What this provider asks per hour: a price per CPU core, per GiB of memory and per GPU (by
//! model or family), summed for the resources an order asks for and rounded up to the
//! micro-unit. Pure integer arithmetic, no floats.

use std::collections::BTreeMap;

use gpunet_protocol::{Amount, Capacity, Resources};

/// Thousandths of a core in one core.
const MILLIS_PER_CORE: u128 = 1_000;
/// MiB in one GiB.
const MIB_PER_GIB: u128 = 1_024;

/// Hourly prices (usd). [`Pricing::default`] is 0.10 per CPU core, 0.01 per GiB of memory and
/// 2.00 per GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    pub per_cpu_hour: Amount,
    pub per_gib_memory_hour: Amount,
    /// Price per GPU by model (`h100-80gb`) or family (`h100`); a model entry wins over its
    /// family's.
    pub per_gpu_hour: BTreeMap<String, Amount>,
    /// Price per GPU whose model and family are not in `per_gpu_hour`.
    pub default_per_gpu_hour: Amount,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            per_cpu_hour: Amount::from_micros(100_000),
            per_gib_memory_hour: Amount::from_micros(10_000),
            per_gpu_hour: BTreeMap::new(),
            default_per_gpu_hour: Amount::from_micros(2_000_000),
        }
    }
}

impl Pricing {
    /// The hourly price of one GPU in `capacity.gpus[slot]`; `None` for a slot that is not there.
    pub fn gpu_price(&self, capacity: &Capacity, slot: u32) -> Option<Amount> {
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
    /// parts, rounded up to the micro-unit once, at the end. `None` if a slot is not in
    /// `capacity` or the price does not fit in an [`Amount`].
    pub fn price_per_hour(
        &self,
        req: &Resources,
        capacity: &Capacity,
        gpu_slots: &[u32],
    ) -> Option<Amount> {
        // Everything over the common denominator (millicores × MiB-per-GiB) so that rounding
        // happens once.
        let den = MILLIS_PER_CORE * MIB_PER_GIB;
        let cpu = u128::from(self.per_cpu_hour.micros())
            .checked_mul(u128::from(req.cpu_millis))?
            .checked_mul(MIB_PER_GIB)?;
        let memory = u128::from(self.per_gib_memory_hour.micros())
            .checked_mul(u128::from(req.memory_mib))?
            .checked_mul(MILLIS_PER_CORE)?;
        let mut gpus: u128 = 0;
        for &slot in gpu_slots {
            let price = self.gpu_price(capacity, slot)?;
            gpus = gpus.checked_add(u128::from(price.micros()))?;
        }
        let num = cpu
            .checked_add(memory)?
            .checked_add(gpus.checked_mul(den)?)?;
        let micros = num.div_ceil(den);
        u64::try_from(micros).ok().map(Amount::from_micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpunet_protocol::{GpuRequirement, GpuSlot};

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

    fn check(pricing: &Pricing, r: Resources, slots: &[u32], expected: &str) {
        let got = pricing
            .price_per_hour(&r, &capacity(), slots)
            .expect("prices");
        assert_eq!(got.to_string(), expected, "{r:?} on {slots:?}");
    }

    #[test]
    fn default_prices_sum_cpu_memory_and_gpus() {
        let p = Pricing::default();
        // 1 core, 1 GiB: 0.10 + 0.01.
        check(&p, req(1_000, 1_024, 0), &[], "0.11");
        // 2.5 cores, 4 GiB, one GPU: 0.25 + 0.04 + 2.00.
        check(&p, req(2_500, 4_096, 1), &[0], "2.29");
        check(&p, req(1_000, 1_024, 2), &[0, 1], "4.11");
    }

    #[test]
    fn the_sum_is_rounded_up_to_the_micro_unit_once() {
        let p = Pricing::default();
        // 1 millicore = 0.0001 usd/h = 100 micros exactly; 1 MiB = 10000/1024 = 9.765625 micros.
        check(&p, req(1, 1, 0), &[], "0.00011");
        // 3 MiB = 29.296875 micros → 30 with the 100 micros of CPU: 129.296875 → 130.
        check(&p, req(1, 3, 0), &[], "0.00013");
    }

    #[test]
    fn gpu_prices_go_by_model_then_family_then_default() {
        let mut p = Pricing::default();
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
        let p = Pricing::default();
        assert_eq!(p.price_per_hour(&req(1, 1, 1), &capacity(), &[7]), None);
        let huge = Pricing {
            per_cpu_hour: Amount::MAX,
            ..Pricing::default()
        };
        assert_eq!(
            huge.price_per_hour(&req(u32::MAX, 1, 0), &capacity(), &[]),
            None
        );
    }
}
