//! Akash SDL (the Stack Definition Language, versions 2.0 and 2.1) to a gpunet job spec, for
//! `gpunet sdl convert` and `gpunet job submit --from-sdl`.
//!
//! The services a deployment places become one gpunet job, run on one provider. The main
//! service is the first, in the order the `services` section defines them, with an expose
//! `to: [{global: true}]`, else the first: it is the job's own `run`, `expose` and `resources`,
//! and the job's `name` is its name made a DNS label. Every other placed service becomes an
//! entry of `services`, named the same way; on the job's private network each reaches the
//! others by those names.
//!
//! What maps, for each placed service:
//! - `services.<s>.image` → `run.image`; `command` followed by `args` → `run.command`, `args`
//!   without `command` → `run.args` (the image's entrypoint with them), neither → the image's
//!   own entrypoint and arguments;
//!   `env: [K=V]` → `run.env`; every service gets `run.writable_root: true`, as an Akash
//!   container has a writable root filesystem (what it writes there counts within its disk),
//!   and `run.capabilities: baseline`, as an Akash container has Docker's default
//!   capabilities (images that start as root and switch users need them): the job matches
//!   only providers that grant them (`--allow-capabilities baseline`, ADR 0013).
//! - `services.<s>.expose[]` with `to: [{global: true}]` → the service's `expose` (port 80 or
//!   `as: 80`, or `http_options`, as `http`; other TCP ports as `tcp`) with `run.network:
//!   egress`; a published port makes the job `kind: service`.
//! - `services.<s>.expose[]` with `to: [{service: <other>}]` → nothing to add: every service of
//!   a gpunet job reaches every port of the others by name. An expose to no one, or to services
//!   only, publishes nothing (UDP included: the private network carries it).
//! - `profiles.compute.<p>.resources`, per replica: `cpu.units` → `resources.cpu`,
//!   `memory.size` → `resources.memory`, ephemeral `storage` (one entry or a list, summed) →
//!   `resources.disk`, `gpu.units` → `resources.gpu.count`,
//!   `gpu.attributes.vendor.nvidia[].model` → `resources.gpu.models` (so `h100` stays an
//!   `h100` constraint, in every service that asks for it) and their least `ram` →
//!   `resources.gpu.vram`.
//! - Persistent storage: a `storage` entry with `attributes.persistent: true` (or `"true"`)
//!   that the service mounts with `services.<s>.params.storage.<name>.mount` → an entry of
//!   that service's `volumes` (the job's own for the main service): `name` the storage's name
//!   (`default` when it has none) made a DNS label, its `size`, `mount` the mount path; in the
//!   profile's order. Volumes count within a container's disk, so the service's
//!   `resources.disk` is its ephemeral storage plus the sizes of the volumes it mounts. Each
//!   replica has its own volume, kept while the lease lasts (across in-place restarts) and
//!   erased when it ends, as Akash keeps persistent storage for its lease; an attempt on
//!   another provider starts with it empty. `class: default`, or no class, maps as no class.
//!   A mount path the spec refuses (a relative one, one over or under `/outputs`, `/inputs`,
//!   `/checkpoints`, `/tmp`, `/proc`, `/sys` or `/dev`, or one overlapping another volume's) is
//!   an error naming `params.storage.<name>.mount`, with the spec's own reason.
//! - `deployment.<s>.<g>`: `profile`; `count` → `services[].count` (1 to 8) for a service
//!   other than the main one, and `count: 1` for the main one.
//! - `profiles.placement.<g>.attributes.region` → `placement.regions`, of the placement group
//!   `<g>` the main service is deployed in.
//! - Pricing: SDL prices are per block in `uakt`/`uact`/IBC denoms, which have no fixed usd
//!   value; `--max-per-hour` (usd, for the whole job) is required, `--deposit` defaults to one
//!   hour of it, and `--max-duration` (Akash leases have none) to a day.
//!
//! Everything else is listed by its path with why, and the conversion is refused unless the
//! caller accepts a lossy one, which leaves it out (as each why says). Nothing is dropped
//! silently. That is: a `count` above 1 for the main service (gpunet runs a job's own run once)
//! and above 8 for another; services deployed in a placement group other than the main one's
//! (a job runs on one provider); GPU models that differ between services (a job's order names
//! one list); with several services, a name that is not a DNS label (the others would reach it
//! by another); an expose `to` a service the SDL does not define; an `as` that remaps the
//! port, unless to 80 on an expose to no service (services reach the container's own port);
//! UDP exposed globally; `accept` hosts; `http_options`; a storage `class` other than
//! `default` — `beta1`, `beta2`, `beta3` are speed classes gpunet does not offer (with --lossy
//! the storage maps without one), and `ram` is a RAM disk (a tmpfs) it does not offer (with
//! --lossy that storage maps to nothing: neither counted in the disk nor mounted); a persistent
//! storage the service does not mount, reported for each service deployed with the profile
//! (with --lossy it is no volume and not counted in the disk); a `params.storage.<name>` that
//! names a storage the profile lacks, or an ephemeral or `ram` one (gpunet mounts only
//! persistent volumes: nothing is mounted); `params.storage.<name>.readOnly: true` (volumes are
//! mounted read-write); `credentials`; `dependencies` (services start together); a second
//! placement of a service; services defined but not deployed; other placement attributes;
//! `signedBy`; non-NVIDIA GPUs; GPU `interface`; `endpoints`; and any key this converter does
//! not know.
//!
//! A job past gpunet's bounds (more than 8 services besides the main one, more than 16
//! containers with their counts) is refused by the spec's own checks, naming the field.
//!
//! Pure: text in, a checked [`JobSpec`] and the list out.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use crate::Amount;
use crate::jobspec::{
    JobSpec, MAX_SERVICE_NAME_BYTES, MAX_SERVICE_REPLICAS, Mebibytes, Millicores, Seconds,
};

/// Longest SDL file read, in bytes.
pub const MAX_SDL_BYTES: usize = 1024 * 1024;

/// What the caller adds that an SDL cannot say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdlOptions {
    /// Highest price per hour in usd. Required when the SDL prices in anything else.
    pub max_per_hour: Option<Amount>,
    /// Deposit in usd; default one hour of `max_per_hour`.
    pub deposit: Option<Amount>,
    /// The job's `limits.max_duration`; default a day.
    pub max_duration: Option<Seconds>,
    /// Convert even when some constructs do not map (they are still listed).
    pub lossy: bool,
}

/// One construct that did not map: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    /// Its path in the SDL, e.g. `services.web.expose[0].accept`.
    pub path: String,
    pub why: String,
}

/// A converted SDL: the checked spec and what did not map.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub spec: JobSpec,
    /// The gpunet spec as YAML, for people and files.
    pub yaml: String,
    pub unmapped: Vec<Unmapped>,
}

/// Why an SDL could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum SdlError {
    #[error("the SDL is {bytes} bytes; the limit is {MAX_SDL_BYTES}")]
    TooLarge { bytes: usize },
    #[error("the SDL is not YAML: {0}")]
    NotYaml(String),
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
    #[error(
        "{} construct(s) of the SDL do not map to gpunet:\n{}\nconvert with --lossy to leave them out",
        .0.len(),
        .0.iter().map(|u| format!("  {}: {}", u.path, u.why)).collect::<Vec<_>>().join("\n")
    )]
    Unmapped(Vec<Unmapped>),
    #[error("the converted spec is not valid: {0}")]
    Spec(String),
}

fn invalid(path: impl Into<String>, why: impl Into<String>) -> SdlError {
    SdlError::Invalid {
        path: path.into(),
        why: why.into(),
    }
}

/// The converter's state: what did not map so far.
struct Walk {
    unmapped: Vec<Unmapped>,
}

impl Walk {
    fn skip(&mut self, path: impl Into<String>, why: impl Into<String>) {
        self.unmapped.push(Unmapped {
            path: path.into(),
            why: why.into(),
        });
    }

    /// Lists every key of `map` not in `known`.
    fn unknown_keys(&mut self, path: &str, map: &Mapping, known: &[&str]) {
        for k in map.keys() {
            let name = key_name(k);
            if !known.contains(&name.as_str()) {
                self.skip(
                    format!("{path}.{name}"),
                    "not a construct this converter knows",
                );
            }
        }
    }
}

fn key_name(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

fn mapping<'a>(v: &'a Value, path: &str) -> Result<&'a Mapping, SdlError> {
    v.as_mapping()
        .ok_or_else(|| invalid(path, "must be a mapping"))
}

fn get<'a>(map: &'a Mapping, key: &str) -> Option<&'a Value> {
    map.get(Value::String(key.to_owned()))
}

/// A scalar as text: strings as they are, numbers as written.
fn scalar(v: &Value, path: &str) -> Result<String, SdlError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(invalid(path, "must be a string or a number")),
    }
}

fn strings(v: &Value, path: &str) -> Result<Vec<String>, SdlError> {
    let seq = v
        .as_sequence()
        .ok_or_else(|| invalid(path, "must be a list"))?;
    seq.iter()
        .enumerate()
        .map(|(i, x)| scalar(x, &format!("{path}[{i}]")))
        .collect()
}

/// A DNS label from an SDL service name, for the job's `name` and `services[].name`: lower-case
/// `a-z 0-9 -`, not starting or ending with `-`, at most [`MAX_SERVICE_NAME_BYTES`].
fn dns_label(service: &str) -> String {
    let mapped: String = service
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    // Every char is ASCII now, so chars are bytes.
    let mut label: String = mapped
        .trim_matches('-')
        .chars()
        .take(MAX_SERVICE_NAME_BYTES)
        .collect();
    label.truncate(label.trim_end_matches('-').len());
    if label.is_empty() {
        label.push_str("sdl");
    }
    label
}

/// A service the SDL deploys: where, with which profile, how many.
struct Placed<'a> {
    /// Its name in the SDL.
    name: String,
    service: &'a Mapping,
    /// The placement group (`profiles.placement.<group>`) it is deployed in.
    group: String,
    /// `deployment.<name>.<group>`.
    dep_path: String,
    /// Its compute profile (`profiles.compute.<profile>`).
    profile: String,
    count: u32,
}

fn place<'a>(
    w: &mut Walk,
    services: &'a Mapping,
    deployment: &Mapping,
    name: &str,
) -> Result<Placed<'a>, SdlError> {
    let svc_path = format!("services.{name}");
    let service = mapping(
        get(services, name).ok_or_else(|| invalid(&svc_path, "is deployed but not defined"))?,
        &svc_path,
    )?;
    let placements = mapping(
        get(deployment, name).unwrap_or(&Value::Null),
        &format!("deployment.{name}"),
    )?;
    let groups: Vec<String> = placements.keys().map(key_name).collect();
    let Some(group) = groups.first().cloned() else {
        return Err(invalid(format!("deployment.{name}"), "names no placement"));
    };
    for other in groups.iter().skip(1) {
        w.skip(
            format!("deployment.{name}.{other}"),
            "one placement per service; a second would be a second deployment",
        );
    }
    let dep_path = format!("deployment.{name}.{group}");
    let dep = mapping(get(placements, &group).unwrap_or(&Value::Null), &dep_path)?;
    w.unknown_keys(&dep_path, dep, &["profile", "count"]);
    let profile = scalar(
        get(dep, "profile").ok_or_else(|| invalid(format!("{dep_path}.profile"), "is missing"))?,
        &format!("{dep_path}.profile"),
    )?;
    let count = match get(dep, "count") {
        Some(c) => {
            let cp = format!("{dep_path}.count");
            let text = scalar(c, &cp)?;
            text.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                invalid(
                    &cp,
                    format!("{text:?} must be a whole number of replicas, 1 or more"),
                )
            })?
        }
        None => 1,
    };
    Ok(Placed {
        name: name.to_owned(),
        service,
        group,
        dep_path,
        profile,
        count,
    })
}

/// Whether a service has an expose `to: [{global: true}]`. Read leniently: the conversion
/// itself reports what is malformed.
fn has_global_expose(service: &Mapping) -> bool {
    get(service, "expose")
        .and_then(Value::as_sequence)
        .is_some_and(|list| {
            list.iter().filter_map(Value::as_mapping).any(|e| {
                get(e, "to").and_then(Value::as_sequence).is_some_and(|to| {
                    to.iter()
                        .filter_map(Value::as_mapping)
                        .any(|t| get(t, "global").and_then(Value::as_bool) == Some(true))
                })
            })
        })
}

/// The GPU models of converted resources; empty for any.
fn gpu_models(resources: &Mapping) -> Vec<String> {
    get(resources, "gpu")
        .and_then(Value::as_mapping)
        .and_then(|g| get(g, "models"))
        .and_then(Value::as_sequence)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Converts an SDL. See the module doc for what maps.
pub fn convert(text: &str, opts: &SdlOptions) -> Result<Converted, SdlError> {
    if text.len() > MAX_SDL_BYTES {
        return Err(SdlError::TooLarge { bytes: text.len() });
    }
    let root: Value =
        serde_yaml_ng::from_str(text).map_err(|e| SdlError::NotYaml(e.to_string()))?;
    let root = mapping(&root, "(the SDL)")?;
    let mut w = Walk {
        unmapped: Vec::new(),
    };
    w.unknown_keys(
        "",
        root,
        &["version", "services", "profiles", "deployment", "endpoints"],
    );
    // `.x` paths from the root read better without the dot.
    for u in &mut w.unmapped {
        u.path = u.path.trim_start_matches('.').to_owned();
    }
    let version = get(root, "version")
        .map(|v| scalar(v, "version"))
        .transpose()?
        .unwrap_or_default();
    if version != "2.0" && version != "2.1" {
        return Err(invalid(
            "version",
            format!("{version:?} is not an SDL version this converter reads (2.0, 2.1)"),
        ));
    }
    if let Some(e) = get(root, "endpoints")
        && e.as_mapping().is_some_and(|m| !m.is_empty())
    {
        w.skip(
            "endpoints",
            "leased IP endpoints are not supported; gpunet publishes exposed ports itself",
        );
    }
    let services = mapping(
        get(root, "services").ok_or_else(|| invalid("services", "is missing"))?,
        "services",
    )?;
    let deployment = mapping(
        get(root, "deployment").ok_or_else(|| invalid("deployment", "is missing"))?,
        "deployment",
    )?;
    let profiles = mapping(
        get(root, "profiles").ok_or_else(|| invalid("profiles", "is missing"))?,
        "profiles",
    )?;
    w.unknown_keys("profiles", profiles, &["compute", "placement"]);

    // The deployed services, in the order the `services` section defines them.
    let defined: Vec<String> = services.keys().map(key_name).collect();
    let deployed: Vec<String> = deployment.keys().map(key_name).collect();
    if deployed.is_empty() {
        return Err(invalid("deployment", "deploys no service"));
    }
    if let Some(missing) = deployed.iter().find(|d| !defined.contains(d)) {
        return Err(invalid(
            format!("services.{missing}"),
            "is deployed but not defined",
        ));
    }
    for s in &defined {
        if !deployed.contains(s) {
            w.skip(format!("services.{s}"), "defined but never deployed");
        }
    }
    let mut placed = Vec::new();
    for name in defined.iter().filter(|s| deployed.contains(s)) {
        placed.push(place(&mut w, services, deployment, name)?);
    }
    // The main service, the job's own run: the first published to the world, else the first.
    let main_at = placed
        .iter()
        .position(|p| has_global_expose(p.service))
        .unwrap_or(0);
    let main = placed.remove(main_at);
    let others = placed;

    if main.count > 1 {
        w.skip(
            format!("{}.count", main.dep_path),
            format!(
                "{} replicas of the main service: gpunet runs a job's own run once (only its \
                 other services have a count); move what is replicated to a service of its own",
                main.count
            ),
        );
    }
    for p in &others {
        if p.count > MAX_SERVICE_REPLICAS {
            w.skip(
                format!("{}.count", p.dep_path),
                format!(
                    "{} replicas: a gpunet service runs at most {MAX_SERVICE_REPLICAS}; converted \
                     with --lossy it runs {MAX_SERVICE_REPLICAS}",
                    p.count
                ),
            );
        }
        if p.group != main.group {
            w.skip(
                &p.dep_path,
                format!(
                    "placed in {:?}, the main service {:?} in {:?}: gpunet runs a job on one \
                     provider, so all its services need one placement group; converted with \
                     --lossy it runs in {:?}",
                    p.group, main.name, main.group, main.group
                ),
            );
        }
    }

    // Names on the job's network: the main service is the job's name.
    let all: Vec<&Placed> = std::iter::once(&main).chain(&others).collect();
    let mut labels: Vec<String> = Vec::with_capacity(all.len());
    for p in &all {
        let label = dns_label(&p.name);
        if let Some(at) = labels.iter().position(|l| *l == label) {
            return Err(invalid(
                format!("services.{}", p.name),
                format!(
                    "becomes {label:?} as a DNS label, as does services.{}; rename one",
                    all[at].name
                ),
            ));
        }
        labels.push(label);
    }
    if !others.is_empty() {
        for (p, label) in all.iter().zip(&labels) {
            if p.name != *label {
                w.skip(
                    format!("services.{}", p.name),
                    format!(
                        "{:?} is not a DNS label: the job's other services reach it as {label:?}",
                        p.name
                    ),
                );
            }
        }
    }

    let mut runs = Vec::with_capacity(all.len());
    for p in &all {
        runs.push(convert_service(
            &mut w,
            &format!("services.{}", p.name),
            p.service,
            &defined,
        )?);
    }

    // Resources per replica, each compute profile converted (and reported) once; the volumes
    // of each service, which its own params mount, counted within its disk.
    let compute = get(profiles, "compute").and_then(Value::as_mapping);
    let mut by_profile: BTreeMap<&str, Profile> = BTreeMap::new();
    let mut resources = Vec::with_capacity(all.len());
    let mut volumes = Vec::with_capacity(all.len());
    for (p, run) in all.iter().zip(&runs) {
        let cp = format!("profiles.compute.{}", p.profile);
        let profile = match by_profile.get(p.profile.as_str()) {
            Some(r) => r.clone(),
            None => {
                let c = compute
                    .and_then(|c| get(c, &p.profile))
                    .ok_or_else(|| invalid(&cp, "is missing"))?;
                let r = convert_resources(&mut w, &cp, mapping(c, &cp)?)?;
                by_profile.insert(&p.profile, r.clone());
                r
            }
        };
        let vols = volumes_of(
            &mut w,
            &format!("services.{}", p.name),
            &cp,
            &profile,
            &run.mounts,
        )?;
        let disk = profile
            .storages
            .iter()
            .filter(|s| s.kind == StorageKind::Ephemeral)
            .map(|s| s.size.0)
            .chain(vols.iter().map(|v| v.size.0))
            .fold(0u64, u64::saturating_add);
        let mut res = profile.resources;
        res.insert(
            Value::String("disk".into()),
            Value::String(format!("{disk}Mi")),
        );
        resources.push(res);
        volumes.push(vols);
    }
    // One list of GPU models for the job: the first service's that names any.
    let mut first_models: Option<(Vec<String>, &str)> = None;
    let mut differing: Vec<String> = Vec::new();
    for (p, res) in all.iter().zip(&mut resources) {
        let models = gpu_models(res);
        if models.is_empty() {
            continue;
        }
        match &first_models {
            None => first_models = Some((models, &p.name)),
            Some((first, owner)) if *first != models => {
                let path = format!(
                    "profiles.compute.{}.resources.gpu.attributes.vendor.nvidia",
                    p.profile
                );
                if !differing.contains(&path) {
                    w.skip(
                        &path,
                        format!(
                            "GPU models {models:?} differ from {first:?} of service {owner:?}: a \
                             job runs on one provider and its order names one list of models; \
                             converted with --lossy they are left out and the job asks for \
                             {first:?}"
                        ),
                    );
                    differing.push(path);
                }
                if let Some(Value::Mapping(gpu)) = res.get_mut(Value::String("gpu".into())) {
                    gpu.remove(Value::String("models".into()));
                }
            }
            Some(_) => {}
        }
    }

    let place_path = format!("profiles.placement.{}", main.group);
    let placement = get(profiles, "placement")
        .and_then(|c| c.as_mapping())
        .and_then(|c| get(c, &main.group))
        .ok_or_else(|| invalid(&place_path, "is missing"))?;
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    let (regions, priced) = convert_placement(
        &mut w,
        &place_path,
        mapping(placement, &place_path)?,
        &names,
    )?;

    if !w.unmapped.is_empty() && !opts.lossy {
        return Err(SdlError::Unmapped(w.unmapped));
    }

    let max_per_hour = match (opts.max_per_hour, priced) {
        (Some(p), _) => p,
        (None, Some(Priced { service, denom })) => {
            return Err(invalid(
                format!("{place_path}.pricing.{service}"),
                format!(
                    "prices in {denom} per block, which has no fixed usd value; give the most \
                     you pay per hour in usd with --max-per-hour"
                ),
            ));
        }
        (None, None) => {
            return Err(invalid(
                format!("{place_path}.pricing"),
                "has no price for the services; give --max-per-hour (usd)",
            ));
        }
    };
    let deposit = opts.deposit.unwrap_or(max_per_hour);
    let max_duration = opts.max_duration.unwrap_or(Seconds(86_400));

    let s = |x: &str| Value::String(x.to_owned());
    let published = runs.iter().any(|r| !r.expose.is_empty());
    let mut runs = runs.into_iter();
    let mut resources = resources.into_iter();
    let mut labels = labels.into_iter();
    let mut spec = Mapping::new();
    spec.insert(s("version"), Value::Number(1.into()));
    spec.insert(
        s("name"),
        s(&labels.next().expect("the main service has a label")),
    );
    if published {
        spec.insert(s("kind"), s("service"));
    }
    let main_run = runs.next().expect("the main service was converted");
    let main_expose = main_run.expose.clone();
    spec.insert(s("run"), Value::Mapping(main_run.into_run()));
    if !main_expose.is_empty() {
        spec.insert(s("expose"), Value::Sequence(main_expose));
    }
    let main_resources = resources.next().expect("the main service has resources");
    // Each volume by its path in the spec, so that the spec's errors name the SDL's.
    let mut volume_at: Vec<(String, &Volume)> = Vec::new();
    let mut volumes = volumes.iter();
    let main_volumes = volumes.next().expect("the main service has volumes");
    volume_at.extend(
        main_volumes
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("volumes[{i}]"), v)),
    );
    let mut entries = Vec::with_capacity(others.len());
    for (k, ((((p, run), res), label), vols)) in others
        .iter()
        .zip(runs)
        .zip(resources)
        .zip(labels)
        .zip(volumes)
        .enumerate()
    {
        let mut e = Mapping::new();
        e.insert(s("name"), s(&label));
        let count = p.count.min(MAX_SERVICE_REPLICAS);
        if count != 1 {
            e.insert(s("count"), Value::Number(count.into()));
        }
        let expose = run.expose.clone();
        e.insert(s("run"), Value::Mapping(run.into_run()));
        if !expose.is_empty() {
            e.insert(s("expose"), Value::Sequence(expose));
        }
        if !vols.is_empty() {
            e.insert(
                s("volumes"),
                Value::Sequence(vols.iter().map(Volume::to_value).collect()),
            );
            volume_at.extend(
                vols.iter()
                    .enumerate()
                    .map(|(i, v)| (format!("services[{k}].volumes[{i}]"), v)),
            );
        }
        e.insert(s("resources"), Value::Mapping(res));
        entries.push(Value::Mapping(e));
    }
    if !entries.is_empty() {
        spec.insert(s("services"), Value::Sequence(entries));
    }
    if !main_volumes.is_empty() {
        spec.insert(
            s("volumes"),
            Value::Sequence(main_volumes.iter().map(Volume::to_value).collect()),
        );
    }
    spec.insert(s("resources"), Value::Mapping(main_resources));
    if !regions.is_empty() {
        let mut p = Mapping::new();
        p.insert(
            s("regions"),
            Value::Sequence(regions.iter().map(|r| s(r)).collect()),
        );
        spec.insert(s("placement"), Value::Mapping(p));
    }
    let mut pricing = Mapping::new();
    pricing.insert(s("max_per_hour"), s(&max_per_hour.to_string()));
    pricing.insert(s("deposit"), s(&deposit.to_string()));
    spec.insert(s("pricing"), Value::Mapping(pricing));
    let mut limits = Mapping::new();
    limits.insert(s("max_duration"), s(&format!("{}s", max_duration.0)));
    spec.insert(s("limits"), Value::Mapping(limits));
    let yaml = serde_yaml_ng::to_string(&Value::Mapping(spec))
        .map_err(|e| SdlError::Spec(e.to_string()))?;
    let parsed = JobSpec::parse_yaml(&yaml).map_err(|e| spec_error(e, &volume_at))?;
    Ok(Converted {
        spec: parsed,
        yaml,
        unmapped: w.unmapped,
    })
}

/// One service converted: its `run`, the ports it publishes and the storages it mounts.
struct ServiceRun {
    run: Mapping,
    expose: Vec<Value>,
    /// Its `params.storage`, in order.
    mounts: Vec<StorageMount>,
}

/// A service's `params.storage.<name>`.
struct StorageMount {
    /// The storage it mounts, by its name in the profile.
    name: String,
    /// `services.<s>.params.storage.<name>`.
    path: String,
    mount: String,
    read_only: bool,
}

/// A volume of one service: a persistent storage of its profile that it mounts.
struct Volume {
    /// The storage's name made a DNS label.
    label: String,
    size: Mebibytes,
    mount: String,
    /// The storage's path in the profile.
    storage_path: String,
    /// The path of its `params.storage.<name>`.
    mount_path: String,
}

impl Volume {
    fn to_value(&self) -> Value {
        let s = |x: &str| Value::String(x.to_owned());
        let mut m = Mapping::new();
        m.insert(s("name"), s(&self.label));
        m.insert(s("size"), s(&format!("{}Mi", self.size.0)));
        m.insert(s("mount"), s(&self.mount));
        Value::Mapping(m)
    }
}

/// The volumes of the service at `svc_path`, deployed with the compute profile at
/// `profile_path`: each persistent storage of the profile that its `params.storage` mounts, in
/// the profile's order. What does not map is reported: a persistent storage it does not mount,
/// a mount of a storage the profile lacks or that is not persistent, and `readOnly`.
fn volumes_of(
    w: &mut Walk,
    svc_path: &str,
    profile_path: &str,
    profile: &Profile,
    mounts: &[StorageMount],
) -> Result<Vec<Volume>, SdlError> {
    for m in mounts {
        let (name, at) = (&m.name, &m.mount);
        match profile.storages.iter().find(|s| s.name == *name) {
            None => w.skip(
                &m.path,
                format!(
                    "{profile_path} has no storage named {name:?}; converted with --lossy \
                     nothing is mounted at {at}"
                ),
            ),
            Some(s) if s.kind == StorageKind::Ephemeral => w.skip(
                &m.path,
                format!(
                    "{name:?} is ephemeral storage: gpunet mounts only persistent volumes \
                     (attributes.persistent: true), a container's ephemeral storage is its own \
                     disk; converted with --lossy nothing is mounted at {at} and the storage \
                     counts in resources.disk"
                ),
            ),
            Some(s) if s.kind == StorageKind::Ram => w.skip(
                &m.path,
                format!(
                    "{name:?} is a RAM disk (class ram), which gpunet does not offer; converted \
                     with --lossy nothing is mounted at {at}"
                ),
            ),
            Some(_) if m.read_only => w.skip(
                format!("{}.readOnly", m.path),
                format!(
                    "gpunet mounts volumes read-write; converted with --lossy {name:?} is \
                     mounted read-write at {at}"
                ),
            ),
            Some(_) => {}
        }
    }
    let mut volumes: Vec<Volume> = Vec::new();
    for s in &profile.storages {
        if s.kind != StorageKind::Persistent {
            continue;
        }
        let Some(m) = mounts.iter().find(|m| m.name == s.name) else {
            w.skip(
                &s.path,
                format!(
                    "persistent storage {:?} is mounted nowhere: {svc_path}.params.storage does \
                     not name it, so there is nothing to mount; converted with --lossy it is \
                     left out (no volume, not counted in resources.disk)",
                    s.name
                ),
            );
            continue;
        };
        let label = dns_label(&s.name);
        if let Some(o) = volumes.iter().find(|v| v.label == label) {
            return Err(invalid(
                format!("{}.name", s.path),
                format!(
                    "becomes {label:?} as a volume name (a DNS label), as does {}; rename one",
                    o.storage_path
                ),
            ));
        }
        volumes.push(Volume {
            label,
            size: s.size,
            mount: m.mount.clone(),
            storage_path: s.path.clone(),
            mount_path: m.path.clone(),
        });
    }
    Ok(volumes)
}

/// The spec's own error, naming the SDL's path where it is about a volume: `volumes` lists
/// each volume's path in the spec (`volumes[0]`, `services[1].volumes[0]`) with the volume.
fn spec_error(e: crate::jobspec::SpecError, volumes: &[(String, &Volume)]) -> SdlError {
    if let crate::jobspec::SpecError::Invalid { path, why } = &e {
        for (at, v) in volumes {
            let sdl = match path.strip_prefix(at.as_str()) {
                Some(".mount") => format!("{}.mount", v.mount_path),
                Some(".size") => format!("{}.size", v.storage_path),
                Some(".name") => format!("{}.name", v.storage_path),
                _ => continue,
            };
            return invalid(sdl, format!("{why} (the spec's {path})"));
        }
    }
    SdlError::Spec(e.to_string())
}

impl ServiceRun {
    /// The `run`, with egress when ports are published (Docker publishes only the ports of a
    /// container with a network; the job's private network is there either way).
    fn into_run(mut self) -> Mapping {
        if !self.expose.is_empty() {
            self.run.insert(
                Value::String("network".into()),
                Value::String("egress".into()),
            );
        }
        self.run
    }
}

/// A service's image, command, env and exposes; `defined` are the SDL's service names, which
/// service-to-service exposes may name.
fn convert_service(
    w: &mut Walk,
    path: &str,
    service: &Mapping,
    defined: &[String],
) -> Result<ServiceRun, SdlError> {
    let s = |x: &str| Value::String(x.to_owned());
    let mut run = Mapping::new();
    w.unknown_keys(
        path,
        service,
        &[
            "image",
            "command",
            "args",
            "env",
            "expose",
            "params",
            "credentials",
            "dependencies",
        ],
    );
    let image = scalar(
        get(service, "image").ok_or_else(|| invalid(format!("{path}.image"), "is missing"))?,
        &format!("{path}.image"),
    )?;
    run.insert(s("image"), s(&image));
    // Akash gives every container a writable root and Docker's default capabilities, and
    // images are made for both (nginx and postgres start as root and switch users).
    run.insert(s("writable_root"), Value::Bool(true));
    run.insert(s("capabilities"), s("baseline"));
    // As in Kubernetes, which Akash runs on: `command` replaces the image's entrypoint and
    // `args` its default arguments. gpunet's `command` is the whole argv, so `command` with
    // `args` is their concatenation; `args` alone are the image entrypoint's `args`; neither
    // runs the image as it is.
    let command = match get(service, "command") {
        Some(c) => strings(c, &format!("{path}.command"))?,
        None => Vec::new(),
    };
    let args = match get(service, "args") {
        Some(a) => strings(a, &format!("{path}.args"))?,
        None => Vec::new(),
    };
    let sequence = |v: &[String]| Value::Sequence(v.iter().map(|c| s(c)).collect());
    if command.is_empty() {
        if !args.is_empty() {
            run.insert(s("args"), sequence(&args));
        }
    } else {
        let argv: Vec<String> = command.into_iter().chain(args).collect();
        run.insert(s("command"), sequence(&argv));
    }
    if let Some(env) = get(service, "env") {
        let mut map = Mapping::new();
        for (i, kv) in strings(env, &format!("{path}.env"))?.iter().enumerate() {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(invalid(
                    format!("{path}.env[{i}]"),
                    format!("{kv:?} is not NAME=value"),
                ));
            };
            map.insert(s(k), s(v));
        }
        run.insert(s("env"), Value::Mapping(map));
    }
    for key in ["credentials", "dependencies"] {
        if get(service, key).is_some() {
            let why = match key {
                "credentials" => "private registry credentials are not supported yet",
                _ => {
                    "a gpunet job starts its services together, in no order; wait for what a \
                     service needs in its command"
                }
            };
            w.skip(format!("{path}.{key}"), why);
        }
    }
    let mut mounts = Vec::new();
    if let Some(params) = get(service, "params") {
        let pp = format!("{path}.params");
        let params = mapping(params, &pp)?;
        w.unknown_keys(&pp, params, &["storage"]);
        if let Some(storage) = get(params, "storage") {
            let sp = format!("{pp}.storage");
            for (k, v) in mapping(storage, &sp)? {
                let name = key_name(k);
                let mp = format!("{sp}.{name}");
                let v = mapping(v, &mp)?;
                w.unknown_keys(&mp, v, &["mount", "readOnly"]);
                let mount = scalar(
                    get(v, "mount").ok_or_else(|| {
                        invalid(
                            format!("{mp}.mount"),
                            "is missing: the path in the container to mount the storage at",
                        )
                    })?,
                    &format!("{mp}.mount"),
                )?;
                let read_only = match get(v, "readOnly") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(Value::String(t)) if t == "true" || t == "false" => t == "true",
                    Some(_) => {
                        return Err(invalid(format!("{mp}.readOnly"), "must be true or false"));
                    }
                };
                mounts.push(StorageMount {
                    name,
                    path: mp,
                    mount,
                    read_only,
                });
            }
        }
    }
    let mut exposes = Vec::new();
    if let Some(expose) = get(service, "expose") {
        let list = expose
            .as_sequence()
            .ok_or_else(|| invalid(format!("{path}.expose"), "must be a list"))?;
        for (i, e) in list.iter().enumerate() {
            let ep = format!("{path}.expose[{i}]");
            let e = mapping(e, &ep)?;
            w.unknown_keys(
                &ep,
                e,
                &["port", "as", "to", "proto", "accept", "http_options", "ip"],
            );
            let port: u16 = scalar(
                get(e, "port").ok_or_else(|| invalid(format!("{ep}.port"), "is missing"))?,
                &format!("{ep}.port"),
            )?
            .parse()
            .map_err(|_| invalid(format!("{ep}.port"), "must be a port number"))?;
            let as_port = match get(e, "as") {
                Some(a) => scalar(a, &format!("{ep}.as"))?
                    .parse::<u16>()
                    .map_err(|_| invalid(format!("{ep}.as"), "must be a port number"))?,
                None => port,
            };
            // To the world, and to other services of the deployment: both, either or neither.
            let mut global = false;
            let mut to_services = false;
            if let Some(to) = get(e, "to") {
                let to = to
                    .as_sequence()
                    .ok_or_else(|| invalid(format!("{ep}.to"), "must be a list"))?;
                for (j, t) in to.iter().enumerate() {
                    let tp = format!("{ep}.to[{j}]");
                    let t = mapping(t, &tp)?;
                    if get(t, "global").and_then(Value::as_bool) == Some(true) {
                        global = true;
                    }
                    if let Some(other) = get(t, "service") {
                        // On the job's private network every service reaches every port of
                        // the others by name: nothing to add, if the service is there.
                        to_services = true;
                        let other = scalar(other, &format!("{tp}.service"))?;
                        if !defined.contains(&other) {
                            w.skip(
                                format!("{tp}.service"),
                                format!("{other:?} is not a service of this SDL"),
                            );
                        }
                    }
                    w.unknown_keys(&tp, t, &["global", "service", "ip"]);
                    if get(t, "ip").is_some() {
                        w.skip(format!("{tp}.ip"), "leased IPs are not supported");
                    }
                }
            }
            if as_port != port && to_services {
                w.skip(
                    format!("{ep}.as"),
                    format!(
                        "the job's other services reach this one on its own port {port}, not \
                         {as_port}: gpunet's private network does not remap ports"
                    ),
                );
            } else if as_port != port && as_port != 80 {
                w.skip(
                    format!("{ep}.as"),
                    "gpunet publishes the container's own port; remapping needs ingress, not \
                     supported yet",
                );
            }
            let proto = get(e, "proto")
                .map(|p| scalar(p, &format!("{ep}.proto")))
                .transpose()?
                .unwrap_or_else(|| "tcp".into())
                .to_ascii_lowercase();
            if proto == "udp" && global {
                w.skip(
                    format!("{ep}.proto"),
                    "UDP ports are not published; only TCP",
                );
                continue;
            }
            for key in ["accept", "http_options", "ip"] {
                if get(e, key).is_some() {
                    let why = match key {
                        "accept" => "host names need provider ingress, not supported yet",
                        "http_options" => "proxy options need provider ingress, not supported yet",
                        _ => "leased IPs are not supported",
                    };
                    w.skip(format!("{ep}.{key}"), why);
                }
            }
            if !global || proto == "udp" {
                // Not exposed beyond the deployment: nothing to publish.
                continue;
            }
            let http = port == 80 || as_port == 80 || get(e, "http_options").is_some();
            let mut m = Mapping::new();
            m.insert(s("port"), Value::Number(port.into()));
            m.insert(s("proto"), s(if http { "http" } else { "tcp" }));
            exposes.push(Value::Mapping(m));
        }
    }
    Ok(ServiceRun {
        run,
        expose: exposes,
        mounts,
    })
}

/// How a storage of a compute profile maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StorageKind {
    /// Counted in `resources.disk`.
    Ephemeral,
    /// A volume of each service that mounts it, counted in its `resources.disk` too.
    Persistent,
    /// `class: ram`, a tmpfs: reported, and left out.
    Ram,
}

/// One storage of a compute profile.
#[derive(Debug, Clone)]
struct Storage {
    /// Its name in the SDL (`default` when it has none), which `params.storage` names.
    name: String,
    /// Its path, e.g. `profiles.compute.db.resources.storage[1]`.
    path: String,
    size: Mebibytes,
    kind: StorageKind,
}

/// A compute profile converted: `resources` (with the ephemeral storage as `disk`) and its
/// storages.
#[derive(Debug, Clone)]
struct Profile {
    resources: Mapping,
    storages: Vec<Storage>,
}

fn convert_resources(w: &mut Walk, path: &str, compute: &Mapping) -> Result<Profile, SdlError> {
    let s = |x: &str| Value::String(x.to_owned());
    w.unknown_keys(path, compute, &["resources"]);
    let rp = format!("{path}.resources");
    let res = mapping(
        get(compute, "resources").ok_or_else(|| invalid(&rp, "is missing"))?,
        &rp,
    )?;
    w.unknown_keys(&rp, res, &["cpu", "memory", "storage", "gpu"]);
    let mut out = Mapping::new();

    let cpu = get(res, "cpu")
        .and_then(Value::as_mapping)
        .and_then(|m| get(m, "units"))
        .ok_or_else(|| invalid(format!("{rp}.cpu.units"), "is missing"))?;
    let cpu = scalar(cpu, &format!("{rp}.cpu.units"))?;
    let cpu = Millicores::parse(&cpu).map_err(|e| invalid(format!("{rp}.cpu.units"), e))?;
    out.insert(s("cpu"), s(&format!("{}m", cpu.0)));

    let memory = get(res, "memory")
        .and_then(Value::as_mapping)
        .and_then(|m| get(m, "size"))
        .ok_or_else(|| invalid(format!("{rp}.memory.size"), "is missing"))?;
    let memory = scalar(memory, &format!("{rp}.memory.size"))?;
    let memory = Mebibytes::parse(&memory).map_err(|e| invalid(format!("{rp}.memory.size"), e))?;
    out.insert(s("memory"), s(&format!("{}Mi", memory.0)));

    // Storage: one mapping or a list. The ephemeral entries add up to the container's disk;
    // the persistent ones become volumes of the services that mount them (see `volumes_of`).
    let mut ephemeral: u64 = 0;
    let mut storages: Vec<Storage> = Vec::new();
    let entries: Vec<(String, &Value)> = match get(res, "storage") {
        Some(Value::Sequence(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{rp}.storage[{i}]"), v))
            .collect(),
        Some(v @ Value::Mapping(_)) => vec![(format!("{rp}.storage"), v)],
        Some(_) => {
            return Err(invalid(
                format!("{rp}.storage"),
                "must be a mapping or a list",
            ));
        }
        None => Vec::new(),
    };
    for (vp, v) in &entries {
        let v = mapping(v, vp)?;
        w.unknown_keys(vp, v, &["name", "size", "attributes"]);
        // Akash calls the storage without a name `default`.
        let name = match get(v, "name") {
            Some(n) => scalar(n, &format!("{vp}.name"))?,
            None => "default".to_owned(),
        };
        let size = scalar(
            get(v, "size").ok_or_else(|| invalid(format!("{vp}.size"), "is missing"))?,
            &format!("{vp}.size"),
        )?;
        let size = Mebibytes::parse(&size).map_err(|e| invalid(format!("{vp}.size"), e))?;
        let mut persistent = false;
        let mut class = None;
        if let Some(attrs) = get(v, "attributes") {
            let ap = format!("{vp}.attributes");
            let attrs = mapping(attrs, &ap)?;
            w.unknown_keys(&ap, attrs, &["persistent", "class"]);
            if let Some(p) = get(attrs, "persistent") {
                persistent = match p {
                    Value::Bool(b) => *b,
                    Value::String(t) if t == "true" || t == "false" => t == "true",
                    _ => {
                        return Err(invalid(format!("{ap}.persistent"), "must be true or false"));
                    }
                };
            }
            if let Some(c) = get(attrs, "class") {
                class = Some(scalar(c, &format!("{ap}.class"))?);
            }
        }
        let kind = match class.as_deref() {
            None | Some("default") => {
                if persistent {
                    StorageKind::Persistent
                } else {
                    StorageKind::Ephemeral
                }
            }
            Some("ram") => {
                w.skip(
                    format!("{vp}.attributes.class"),
                    "class ram is a RAM disk (a tmpfs, not persistent), which gpunet does not \
                     offer; converted with --lossy this storage is left out: not counted in \
                     resources.disk, nothing mounted",
                );
                StorageKind::Ram
            }
            Some(c) => {
                w.skip(
                    format!("{vp}.attributes.class"),
                    format!(
                        "storage class {c:?} is not offered: gpunet has no storage classes, a \
                         container's disk and volumes are on its provider's own disk; converted \
                         with --lossy this storage maps without it"
                    ),
                );
                if persistent {
                    StorageKind::Persistent
                } else {
                    StorageKind::Ephemeral
                }
            }
        };
        // Two ephemeral storages of one name (two unnamed, say) just add up; a storage that a
        // service would mount must be the only one of its name.
        if let Some(other) = storages.iter().find(|o| {
            o.name == name && (o.kind != StorageKind::Ephemeral || kind != StorageKind::Ephemeral)
        }) {
            return Err(invalid(
                format!("{vp}.name"),
                format!("{name:?} names two storages, as does {}", other.path),
            ));
        }
        if kind == StorageKind::Ephemeral {
            ephemeral = ephemeral.saturating_add(size.0);
        }
        storages.push(Storage {
            name,
            path: vp.clone(),
            size,
            kind,
        });
    }
    if ephemeral == 0 {
        return Err(invalid(
            format!("{rp}.storage"),
            "has no ephemeral storage; gpunet needs the container's disk size (its persistent \
             volumes count within it, besides)",
        ));
    }
    out.insert(s("disk"), s(&format!("{ephemeral}Mi")));

    if let Some(gpu) = get(res, "gpu") {
        let gp = format!("{rp}.gpu");
        let gpu = mapping(gpu, &gp)?;
        w.unknown_keys(&gp, gpu, &["units", "attributes"]);
        let units = scalar(
            get(gpu, "units").ok_or_else(|| invalid(format!("{gp}.units"), "is missing"))?,
            &format!("{gp}.units"),
        )?;
        let units: u32 = units
            .parse()
            .map_err(|_| invalid(format!("{gp}.units"), "must be a whole number"))?;
        if units > 0 {
            let mut g = Mapping::new();
            g.insert(s("count"), Value::Number(units.into()));
            let mut models = Vec::new();
            let mut vram: Option<u64> = None;
            if let Some(attrs) = get(gpu, "attributes") {
                let ap = format!("{gp}.attributes");
                let attrs = mapping(attrs, &ap)?;
                w.unknown_keys(&ap, attrs, &["vendor"]);
                if let Some(vendor) = get(attrs, "vendor") {
                    let vendor = mapping(vendor, &format!("{ap}.vendor"))?;
                    for name in vendor.keys().map(key_name) {
                        if name != "nvidia" {
                            w.skip(
                                format!("{ap}.vendor.{name}"),
                                "only NVIDIA GPUs are offered",
                            );
                        }
                    }
                    if let Some(list) = get(vendor, "nvidia").and_then(Value::as_sequence) {
                        for (i, m) in list.iter().enumerate() {
                            let mp = format!("{ap}.vendor.nvidia[{i}]");
                            let m = mapping(m, &mp)?;
                            w.unknown_keys(&mp, m, &["model", "ram", "interface"]);
                            if let Some(model) = get(m, "model") {
                                models.push(scalar(model, &format!("{mp}.model"))?.to_lowercase());
                            }
                            if let Some(ram) = get(m, "ram") {
                                let ram = Mebibytes::parse(&scalar(ram, &format!("{mp}.ram"))?)
                                    .map_err(|e| invalid(format!("{mp}.ram"), e))?;
                                vram = Some(vram.map_or(ram.0, |v| v.min(ram.0)));
                            }
                            if get(m, "interface").is_some() {
                                w.skip(
                                    format!("{mp}.interface"),
                                    "the GPU interface (pcie, sxm) is not a placement constraint \
                                     gpunet has",
                                );
                            }
                        }
                    }
                }
            }
            if !models.is_empty() {
                // A set of models: in one order, so two services' lists compare.
                models.sort();
                models.dedup();
                g.insert(
                    s("models"),
                    Value::Sequence(models.iter().map(|m| s(m)).collect()),
                );
            }
            if let Some(v) = vram {
                g.insert(s("vram"), s(&format!("{v}Mi")));
            }
            out.insert(s("gpu"), Value::Mapping(g));
        }
    }
    Ok(Profile {
        resources: out,
        storages,
    })
}

/// A placement group's price for one of the job's services.
struct Priced {
    service: String,
    /// `uakt`, `uact` or an IBC denom: none has a fixed usd value.
    denom: String,
}

/// The regions of a placement group, and its price for the first of `services` it prices.
fn convert_placement(
    w: &mut Walk,
    path: &str,
    placement: &Mapping,
    services: &[&str],
) -> Result<(Vec<String>, Option<Priced>), SdlError> {
    w.unknown_keys(path, placement, &["attributes", "signedBy", "pricing"]);
    let mut regions = Vec::new();
    if let Some(attrs) = get(placement, "attributes") {
        let ap = format!("{path}.attributes");
        let attrs = mapping(attrs, &ap)?;
        for (k, v) in attrs {
            let k = key_name(k);
            if k == "region" {
                regions.push(scalar(v, &format!("{ap}.region"))?);
            } else {
                w.skip(
                    format!("{ap}.{k}"),
                    "gpunet places by region (and GPU model) only",
                );
            }
        }
    }
    if get(placement, "signedBy").is_some() {
        w.skip(
            format!("{path}.signedBy"),
            "auditor signatures are not a gpunet concept; providers prove hardware by challenge",
        );
    }
    let mut priced = None;
    if let Some(pricing) = get(placement, "pricing") {
        let pp = format!("{path}.pricing");
        let pricing = mapping(pricing, &pp)?;
        for service in services {
            let Some(price) = get(pricing, service) else {
                continue;
            };
            let price = mapping(price, &format!("{pp}.{service}"))?;
            let denom = get(price, "denom")
                .map(|d| scalar(d, &format!("{pp}.{service}.denom")))
                .transpose()?
                .unwrap_or_else(|| "uakt".into());
            priced.get_or_insert(Priced {
                service: (*service).to_owned(),
                denom,
            });
        }
    }
    Ok((regions, priced))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_made_dns_labels() {
        assert_eq!(dns_label("Web.App"), "web-app");
        assert_eq!(dns_label("my_db"), "my-db");
        assert_eq!(dns_label("-api-"), "api");
        assert_eq!(dns_label(""), "sdl");
        assert_eq!(dns_label("__"), "sdl");
        assert_eq!(dns_label(&"x".repeat(100)).len(), MAX_SERVICE_NAME_BYTES);
        let long = format!("{}_y", "x".repeat(62));
        assert_eq!(
            dns_label(&long),
            "x".repeat(62),
            "no - at the end after cutting"
        );
        for name in ["Web.App", "my_db", "", &"x".repeat(100), &long] {
            assert!(crate::jobspec::is_dns_label(&dns_label(name)), "{name}");
        }
    }
}
