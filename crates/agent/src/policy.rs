//! Whose jobs may run on a runtime that cannot wall workloads off from the host: the process
//! runtime where this machine allows no sandbox (see `gpunet_runtime::Isolation`). There a
//! job runs as the agent's own user, with its files, keys and network, so the agent offers it
//! only to the accounts its operator names (`gpunet dev` and `gpunet demo`: their own tenant)
//! and never runs a stranger's job unsandboxed — it does not bid, and it refuses the manifest
//! should a lease arrive anyway. Pure: the agent's bidding and manifest intake ask it.

use std::collections::BTreeSet;

use gpunet_protocol::{Address, Runtime};

/// Which runtimes lack isolation here, and who may use them all the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantPolicy {
    /// Runtimes whose driver runs workloads without isolation.
    pub unisolated: BTreeSet<Runtime>,
    /// Accounts the operator trusts with them: its own.
    pub trusted_tenants: BTreeSet<Address>,
}

impl TenantPolicy {
    /// Whether a job of `tenant` may run on `runtime` here.
    pub fn allows(&self, runtime: Runtime, tenant: Address) -> bool {
        !self.unisolated.contains(&runtime) || self.trusted_tenants.contains(&tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unisolated_runtime_is_only_for_trusted_tenants_and_others_are_open() {
        let (operator, stranger) = (Address([1; 32]), Address([2; 32]));
        let policy = TenantPolicy {
            unisolated: BTreeSet::from([Runtime::Process]),
            trusted_tenants: BTreeSet::from([operator]),
        };
        assert!(policy.allows(Runtime::Process, operator));
        assert!(!policy.allows(Runtime::Process, stranger));
        assert!(policy.allows(Runtime::Docker, stranger));
        assert!(TenantPolicy::default().allows(Runtime::Process, stranger));
    }
}
