//! The files of a network of validators, as `gpunet node init` writes them: each validator's
//! home (`node-<i>/`: the shared genesis, its key, which validator it is), a tenant key funded
//! at genesis (`keys/tenant.json`) and, when asked, funded provider keys
//! (`keys/provider-<i>.json`). `gpunet dev --validators N` and `gpunet bench churn` write their
//! networks through the same code.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use gpunet_client::KeyFile;
use gpunet_ledger::{Genesis, GenesisAccount, Params};
use gpunet_protocol::{Amount, Balances};

pub use crate::tenant_key_path;

/// Chain id of networks made by `gpunet node init` unless told otherwise.
pub const DEFAULT_NETWORK_CHAIN_ID: &str = "gpunet-local";

/// `gpunet node init`'s flags: what network to write and where.
#[derive(Args)]
pub struct InitArgs {
    /// How many validators. Four with equal power tolerate one failure.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Where validator i is reached: one IP address or DNS name per validator, comma-separated
    /// (e.g. container names on a private Docker network). Default: 127.0.0.1 for all.
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Voting power of validator i, comma-separated. Default: 1 each. Blocks need the votes of
    /// more than two thirds of the total power; proposers take turns in proportion to power.
    #[arg(long, value_delimiter = ',')]
    pub powers: Vec<u64>,
    /// Also write this many provider keys, keys/provider-<i>.json, funded at genesis with
    /// 1,000 gpn (stake and fees) for `gpunet provider start`.
    #[arg(long, default_value_t = 0)]
    pub providers: usize,
    /// Directory to write `node-<i>/` and `keys/` into; must not hold a network already.
    #[arg(long)]
    pub out: PathBuf,
    /// The network's name, in every transaction it accepts (a transaction signed for another
    /// chain is refused).
    #[arg(long, default_value = DEFAULT_NETWORK_CHAIN_ID)]
    pub chain_id: String,
    /// Validator i listens for peers on this port + i.
    #[arg(long, default_value_t = 26_650)]
    pub p2p_port: u16,
    /// Validator i serves its HTTP API on this port + i.
    #[arg(long, default_value_t = 8_650)]
    pub api_port: u16,
    /// Least milliseconds between blocks.
    #[arg(long, default_value_t = 500)]
    pub block_ms: u64,
    /// Set a network parameter at genesis, e.g. `--param liveness_timeout_blocks=60`
    /// (repeatable). The names and defaults are those `GET /v1/params` shows.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
}

/// The default parameters with `settings` (`name=value`) applied, checked together.
pub fn params_with(settings: &[String]) -> Result<Params> {
    let mut value = serde_json::to_value(Params::default())?;
    let map = value
        .as_object_mut()
        .context("parameters serialize as an object")?;
    for setting in settings {
        let (name, raw) = setting.split_once('=').with_context(|| {
            format!("--param {setting:?}: write NAME=VALUE, e.g. liveness_timeout_blocks=60")
        })?;
        let Some(slot) = map.get_mut(name) else {
            let mut names: Vec<&String> = map.keys().collect();
            names.sort();
            anyhow::bail!(
                "--param {name}: no such parameter; the parameters are {}",
                names
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        // Numbers stay numbers; amounts are decimal strings; lists are JSON.
        *slot = match (&*slot, raw.parse::<u64>()) {
            (serde_json::Value::Number(_), Ok(n)) => serde_json::Value::from(n),
            (serde_json::Value::Number(_), Err(_)) => {
                anyhow::bail!("--param {name}={raw}: give a whole number")
            }
            (serde_json::Value::Array(_), _) => serde_json::from_str(raw).with_context(|| {
                format!(
                    "--param {name}={raw}: give a JSON list, e.g. \
                     challenge_bands='[{{\"class\":\"cpu\",\"ops_per_ms\":2000000}}]'"
                )
            })?,
            _ => serde_json::Value::from(raw),
        };
    }
    let params: Params = serde_json::from_value(value).context("--param: a value does not fit")?;
    params
        .validate()
        .map_err(|why| anyhow::anyhow!("--param: {why}"))?;
    Ok(params)
}

fn units(n: u64) -> Amount {
    Amount::from_units(n).expect("small constants fit")
}

/// Path of funded provider key `i` under an `init` output directory.
pub fn provider_key_path(out: &Path, i: usize) -> PathBuf {
    out.join("keys").join(format!("provider-{i}.json"))
}

/// What `gpunet node init` writes, with `extra` accounts funded at genesis besides the tenant
/// (`gpunet dev --validators N` funds its provider this way). Returns the genesis and the
/// tenant key, saved to [`tenant_key_path`].
pub fn write_network(
    a: &InitArgs,
    extra: Vec<GenesisAccount>,
) -> Result<(gpunet_node::NetworkGenesis, KeyFile)> {
    anyhow::ensure!(a.validators >= 1, "--validators must be at least 1");
    let layout = layout(a)?;
    let providers: Vec<KeyFile> = (0..a.providers).map(|_| KeyFile::generate()).collect();
    let tenant = KeyFile::generate();
    let tenant_path = tenant_key_path(&a.out);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let ledger = Genesis {
        chain_id: a.chain_id.clone(),
        genesis_time_ms: now_ms,
        params: params_with(&a.params)?,
        accounts: std::iter::once(GenesisAccount {
            address: tenant.address(),
            balances: Balances {
                usd: units(1_000_000),
                gpn: units(1_000_000),
            },
        })
        .chain(providers.iter().map(|p| GenesisAccount {
            address: p.address(),
            balances: Balances {
                usd: Amount::ZERO,
                gpn: units(1_000),
            },
        }))
        .chain(extra)
        .collect(),
    };
    let keys: Vec<[u8; 32]> = (0..a.validators)
        .map(|_| gpunet_node::generate_validator_key())
        .collect();
    let genesis = gpunet_node::init_network_with(
        &a.out, ledger, &keys, &layout, a.p2p_port, a.api_port, a.block_ms,
    )
    .with_context(|| format!("writing the network under {}", a.out.display()))?;
    tenant
        .save_new(&tenant_path)
        .with_context(|| format!("writing {}", tenant_path.display()))?;
    for (i, p) in providers.iter().enumerate() {
        let path = provider_key_path(&a.out, i);
        p.save_new(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok((genesis, tenant))
}

/// Each validator's host and power from `--hosts` and `--powers` (defaults: 127.0.0.1, 1).
fn layout(a: &InitArgs) -> Result<Vec<gpunet_node::ValidatorLayout>> {
    let n = a.validators;
    anyhow::ensure!(
        a.hosts.is_empty() || a.hosts.len() == n,
        "--hosts names {} hosts for {n} validators; give one per validator, comma-separated",
        a.hosts.len()
    );
    anyhow::ensure!(
        a.powers.is_empty() || a.powers.len() == n,
        "--powers gives {} powers for {n} validators; give one per validator, comma-separated",
        a.powers.len()
    );
    Ok((0..n)
        .map(|i| gpunet_node::ValidatorLayout {
            host: a
                .hosts
                .get(i)
                .cloned()
                .unwrap_or_else(|| "127.0.0.1".to_owned()),
            voting_power: a.powers.get(i).copied().unwrap_or(1),
        })
        .collect())
}

#[cfg(test)]
mod params_tests {
    use super::*;

    #[test]
    fn genesis_params_are_set_by_name_and_checked_together() {
        let p = params_with(&["pause_grace_blocks=25".into(), "min_tx_fee=0.002".into()])
            .expect("valid settings");
        assert_eq!(p.pause_grace_blocks, 25);
        assert_eq!(p.min_tx_fee, Amount::from_micros(2_000));
        let err = |s: &str| params_with(&[s.to_owned()]).expect_err(s).to_string();
        assert!(
            err("no_such=1").contains("no such parameter"),
            "{}",
            err("no_such=1")
        );
        assert!(err("pause_grace_blocks").contains("NAME=VALUE"));
        assert!(err("pause_grace_blocks=soon").contains("whole number"));
        // Each alone is a number; together they break a rule.
        assert!(err("liveness_timeout_blocks=5").contains("liveness_timeout_blocks must exceed"));
        // A list is JSON.
        let p = params_with(&[r#"challenge_bands=[{"class":"cpu","ops_per_ms":5}]"#.into()])
            .expect("a band");
        assert_eq!(p.challenge_bands.len(), 1);
        assert_eq!(p.challenge_bands[0].ops_per_ms, 5);
        assert!(err("challenge_bands=cpu").contains("JSON list"));
        assert!(err(r#"challenge_bands=[{"class":"cpu","ops_per_ms":0}]"#).contains("ops_per_ms"));
    }
}
