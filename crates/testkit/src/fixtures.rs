//! Ready-made values: GPUs, provider profiles and order terms with sensible defaults that tests
//! change one field at a time.

use gpunet_protocol::{
    Amount, Capabilities, Capacity, EncryptionKey, GpuRequirement, GpuSlot, Hash, MICROS_PER_UNIT,
    OrderTerms, ProviderProfile, Rates, RecoveryPolicy, Resources, Runtime,
};

/// `units` whole usd (or gpn) as an [`Amount`].
pub fn usd(units: u64) -> Amount {
    Amount::from_micros(units * MICROS_PER_UNIT)
}

/// A GPU slot of `model` in `family` with `vram_mib` of memory.
pub fn gpu(model: &str, family: &str, vram_mib: u64) -> GpuSlot {
    GpuSlot {
        model: model.to_owned(),
        family: family.to_owned(),
        vram_mib,
    }
}

/// An 80 GB H100.
pub fn h100() -> GpuSlot {
    gpu("h100-80gb", "h100", 81_559)
}

/// A 40 GB A100.
pub fn a100() -> GpuSlot {
    gpu("a100-40gb", "a100", 40_960)
}

/// Posted rates of `cpu_core` per core-hour, `memory_gib` per GiB-hour and `gpu` per GPU-hour
/// (usd micro-units), no per-model rates.
pub fn rates(cpu_core: u64, memory_gib: u64, gpu: u64) -> Rates {
    Rates {
        per_cpu_core_hour: Amount::from_micros(cpu_core),
        per_memory_gib_hour: Amount::from_micros(memory_gib),
        per_gpu_hour: Default::default(),
        default_per_gpu_hour: Amount::from_micros(gpu),
    }
}

/// Rates so high (100 usd per core-hour, 1 per GiB-hour, 100 per GPU-hour) that every order
/// the fixtures build prices above its max: any bid within an order's max price is within
/// them, so tests of the auction need not think about posted prices. Tests of posted prices
/// set their own with [`rates`] (or take the agent's
/// `Rates::default()`).
pub fn ceiling_rates() -> Rates {
    rates(
        100 * MICROS_PER_UNIT,
        MICROS_PER_UNIT,
        100 * MICROS_PER_UNIT,
    )
}

/// A valid profile in region `eu-west` offering both runtimes, 1 TiB of disk and these GPUs, with
/// [`ceiling_rates`].
pub fn provider_profile(cpu_millis: u32, memory_mib: u64, gpus: Vec<GpuSlot>) -> ProviderProfile {
    ProviderProfile {
        endpoint: "http://provider.test:7000".to_owned(),
        region: "eu-west".to_owned(),
        capacity: Capacity {
            cpu_millis,
            memory_mib,
            disk_mib: 1_048_576,
            gpus,
        },
        runtimes: vec![Runtime::Process, Runtime::Docker],
        // Any valid point; ledger tests never seal to it.
        encryption_key: EncryptionKey([9; 32]),
        rates: ceiling_rates(),
        capabilities: Capabilities::None,
    }
}

/// Order terms, built one field at a time from valid defaults: 1 core, 1 GiB of memory and disk,
/// no GPU, any region, the process runtime, a max price of 10 usd/hour, a deposit of 10 usd and
/// a max duration of one hour, and no retries (`RecoveryPolicy::none()`; set one with
/// [`TermsBuilder::recovery`]).
#[derive(Debug, Clone)]
pub struct TermsBuilder {
    terms: OrderTerms,
}

/// Starts a [`TermsBuilder`] from the defaults.
pub fn order_terms() -> TermsBuilder {
    TermsBuilder {
        terms: OrderTerms {
            name: "job".to_owned(),
            manifest_hash: Hash::of(b"manifest"),
            resources: Resources {
                cpu_millis: 1_000,
                memory_mib: 1_024,
                disk_mib: 1_024,
                gpu: GpuRequirement::default(),
            },
            regions: Vec::new(),
            runtime: Runtime::Process,
            max_price_per_hour: usd(10),
            deposit: usd(10),
            max_duration_secs: 3_600,
            recovery: RecoveryPolicy::none(),
            verification: Default::default(),
            capabilities: Capabilities::None,
        },
    }
}

impl TermsBuilder {
    pub fn name(mut self, name: &str) -> Self {
        self.terms.name = name.to_owned();
        self
    }
    pub fn cpu_millis(mut self, cpu_millis: u32) -> Self {
        self.terms.resources.cpu_millis = cpu_millis;
        self
    }
    pub fn memory_mib(mut self, memory_mib: u64) -> Self {
        self.terms.resources.memory_mib = memory_mib;
        self
    }
    pub fn disk_mib(mut self, disk_mib: u64) -> Self {
        self.terms.resources.disk_mib = disk_mib;
        self
    }
    /// `count` GPUs of any of `models` (empty: any model).
    pub fn gpus(mut self, count: u32, models: &[&str]) -> Self {
        self.terms.resources.gpu.count = count;
        self.terms.resources.gpu.models = models.iter().map(|m| (*m).to_owned()).collect();
        self
    }
    pub fn vram_mib_min(mut self, vram_mib_min: u64) -> Self {
        self.terms.resources.gpu.vram_mib_min = vram_mib_min;
        self
    }
    pub fn regions(mut self, regions: &[&str]) -> Self {
        self.terms.regions = regions.iter().map(|r| (*r).to_owned()).collect();
        self
    }
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.terms.runtime = runtime;
        self
    }
    /// Containers that need `capabilities` (ADR 0013); with [`Runtime::Docker`] only.
    pub fn capabilities(mut self, capabilities: Capabilities) -> Self {
        self.terms.capabilities = capabilities;
        self
    }
    pub fn max_price_per_hour(mut self, price: Amount) -> Self {
        self.terms.max_price_per_hour = price;
        self
    }
    pub fn deposit(mut self, deposit: Amount) -> Self {
        self.terms.deposit = deposit;
        self
    }
    pub fn max_duration_secs(mut self, secs: u64) -> Self {
        self.terms.max_duration_secs = secs;
        self
    }
    /// Up to `max_attempts` attempts, retrying these exit codes, after `backoff_secs`.
    pub fn recovery(mut self, max_attempts: u32, on_exit_codes: &[i32], backoff_secs: u64) -> Self {
        self.terms.recovery = RecoveryPolicy {
            max_attempts,
            on_exit_codes: on_exit_codes.to_vec(),
            backoff_secs,
        };
        self
    }
    pub fn build(self) -> OrderTerms {
        self.terms
    }
}

impl From<TermsBuilder> for OrderTerms {
    fn from(b: TermsBuilder) -> OrderTerms {
        b.build()
    }
}
