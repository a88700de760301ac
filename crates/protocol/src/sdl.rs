//! Akash SDL (the Stack Definition Language, versions 2.0 and 2.1) to a gpunet job spec, for
//! `gpunet sdl convert` and `gpunet job submit --from-sdl`.
//!
//! What maps, for the one service a deployment places:
//! - `services.<s>.image` → `run.image`; `command` followed by `args` → `run.command`;
//!   `env: [K=V]` → `run.env`.
//! - `services.<s>.expose[]` with `to: [{global: true}]` → `expose` (port 80 or `as: 80`, or
//!   `http_options`, as `http`; other TCP ports as `tcp`), which makes the job `kind: service`
//!   with `run.network: egress`.
//! - `profiles.compute.<p>.resources`: `cpu.units` → `resources.cpu`, `memory.size` →
//!   `resources.memory`, ephemeral `storage` (summed) → `resources.disk`, `gpu.units` →
//!   `resources.gpu.count`, `gpu.attributes.vendor.nvidia[].model` → `resources.gpu.models`
//!   (so `h100` stays an `h100` constraint) and their least `ram` → `resources.gpu.vram`.
//! - `profiles.placement.<p>.attributes.region` → `placement.regions`.
//! - `deployment.<s>.<p>`: `profile` and `count: 1`.
//! - Pricing: SDL prices are per block in `uakt`/`uact`/IBC denoms, which have no fixed usd
//!   value; `--max-per-hour` (usd) is required, `--deposit` defaults to one hour of it, and
//!   `--max-duration` (Akash leases have none) to a day.
//!
//! Everything else — more than one service, `count` above 1, service-to-service exposes, UDP,
//! `accept` hosts, `http_options`, persistent storage and `params.storage`, `credentials`,
//! `dependencies`, other placement attributes, `signedBy`, non-NVIDIA GPUs, GPU `interface`,
//! `endpoints`, and any key this converter does not know — is listed by its path with why, and
//! the conversion is refused unless the caller accepts a lossy one. Nothing is dropped silently.
//!
//! Pure: text in, a checked [`JobSpec`] and the list out.

use serde_yaml_ng::{Mapping, Value};

use crate::Amount;
use crate::jobspec::{JobSpec, Mebibytes, Millicores, Seconds};

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

/// A gpunet job name from a service name: lower-case `a-z 0-9 - _`, at most 64 bytes.
fn job_name(service: &str) -> String {
    let mut name: String = service
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        name.push_str("sdl");
    }
    name
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

    // The deployed services, in the SDL's order: the first is converted, the others listed.
    let deployed: Vec<String> = deployment.keys().map(key_name).collect();
    let Some(service_name) = deployed.first().cloned() else {
        return Err(invalid("deployment", "deploys no service"));
    };
    for other in deployed.iter().skip(1) {
        w.skip(
            format!("deployment.{other}"),
            "gpunet jobs run one service for now; multi-service jobs are not supported yet",
        );
    }
    for s in services.keys().map(key_name) {
        if !deployed.contains(&s) {
            w.skip(format!("services.{s}"), "defined but never deployed");
        }
    }
    let svc_path = format!("services.{service_name}");
    let service = mapping(
        get(services, &service_name)
            .ok_or_else(|| invalid(&svc_path, "is deployed but not defined"))?,
        &svc_path,
    )?;
    let placements = mapping(
        get(deployment, &service_name).unwrap_or(&Value::Null),
        &format!("deployment.{service_name}"),
    )?;
    let placement_names: Vec<String> = placements.keys().map(key_name).collect();
    let Some(placement_name) = placement_names.first().cloned() else {
        return Err(invalid(
            format!("deployment.{service_name}"),
            "names no placement",
        ));
    };
    for other in placement_names.iter().skip(1) {
        w.skip(
            format!("deployment.{service_name}.{other}"),
            "one placement per job; a second would be a second deployment",
        );
    }
    let dep_path = format!("deployment.{service_name}.{placement_name}");
    let dep = mapping(
        get(placements, &placement_name).unwrap_or(&Value::Null),
        &dep_path,
    )?;
    w.unknown_keys(&dep_path, dep, &["profile", "count"]);
    let profile_name = scalar(
        get(dep, "profile").ok_or_else(|| invalid(format!("{dep_path}.profile"), "is missing"))?,
        &format!("{dep_path}.profile"),
    )?;
    if let Some(count) = get(dep, "count") {
        let count = scalar(count, &format!("{dep_path}.count"))?;
        if count != "1" {
            w.skip(
                format!("{dep_path}.count"),
                format!("{count} replicas: a gpunet job runs one for now"),
            );
        }
    }

    let mut run = Mapping::new();
    let mut spec = Mapping::new();
    let mut kind_service = false;
    convert_service(
        &mut w,
        &svc_path,
        service,
        &mut run,
        &mut spec,
        &mut kind_service,
    )?;

    let compute_path = format!("profiles.compute.{profile_name}");
    let compute = get(profiles, "compute")
        .and_then(|c| c.as_mapping())
        .and_then(|c| get(c, &profile_name))
        .ok_or_else(|| invalid(&compute_path, "is missing"))?;
    let resources = convert_resources(&mut w, &compute_path, mapping(compute, &compute_path)?)?;

    let place_path = format!("profiles.placement.{placement_name}");
    let placement = get(profiles, "placement")
        .and_then(|c| c.as_mapping())
        .and_then(|c| get(c, &placement_name))
        .ok_or_else(|| invalid(&place_path, "is missing"))?;
    let (regions, priced) = convert_placement(
        &mut w,
        &place_path,
        mapping(placement, &place_path)?,
        &service_name,
    )?;

    if !w.unmapped.is_empty() && !opts.lossy {
        return Err(SdlError::Unmapped(w.unmapped));
    }

    let max_per_hour = match (opts.max_per_hour, priced) {
        (Some(p), _) => p,
        (None, Some(denom)) => {
            return Err(invalid(
                format!("{place_path}.pricing.{service_name}"),
                format!(
                    "prices in {denom} per block, which has no fixed usd value; give the most \
                     you pay per hour in usd with --max-per-hour"
                ),
            ));
        }
        (None, None) => {
            return Err(invalid(
                format!("{place_path}.pricing"),
                "has no price for the service; give --max-per-hour (usd)",
            ));
        }
    };
    let deposit = opts.deposit.unwrap_or(max_per_hour);
    let max_duration = opts.max_duration.unwrap_or(Seconds(86_400));

    let s = |x: &str| Value::String(x.to_owned());
    spec.insert(s("version"), Value::Number(1.into()));
    spec.insert(s("name"), s(&job_name(&service_name)));
    if kind_service {
        spec.insert(s("kind"), s("service"));
        run.insert(s("network"), s("egress"));
    }
    spec.insert(s("run"), Value::Mapping(run));
    spec.insert(s("resources"), Value::Mapping(resources));
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
    // The expose list was built into `spec` by the service.
    let yaml = serde_yaml_ng::to_string(&Value::Mapping(spec))
        .map_err(|e| SdlError::Spec(e.to_string()))?;
    let parsed = JobSpec::parse_yaml(&yaml).map_err(|e| SdlError::Spec(e.to_string()))?;
    Ok(Converted {
        spec: parsed,
        yaml,
        unmapped: w.unmapped,
    })
}

fn convert_service(
    w: &mut Walk,
    path: &str,
    service: &Mapping,
    run: &mut Mapping,
    spec: &mut Mapping,
    kind_service: &mut bool,
) -> Result<(), SdlError> {
    let s = |x: &str| Value::String(x.to_owned());
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
    let mut command = match get(service, "command") {
        Some(c) => strings(c, &format!("{path}.command"))?,
        None => Vec::new(),
    };
    if let Some(a) = get(service, "args") {
        command.extend(strings(a, &format!("{path}.args"))?);
    }
    if command.is_empty() {
        return Err(invalid(
            format!("{path}.command"),
            "is missing: gpunet runs the command the spec gives, not the image's entrypoint; \
             add command (and args) to the service",
        ));
    }
    run.insert(
        s("command"),
        Value::Sequence(command.iter().map(|c| s(c)).collect()),
    );
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
                _ => "service dependencies need multi-service jobs, not supported yet",
            };
            w.skip(format!("{path}.{key}"), why);
        }
    }
    if let Some(params) = get(service, "params") {
        let params = mapping(params, &format!("{path}.params"))?;
        for k in params.keys().map(key_name) {
            let why = if k == "storage" {
                "persistent volumes are not supported yet"
            } else {
                "not a construct this converter knows"
            };
            w.skip(format!("{path}.params.{k}"), why);
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
            if as_port != port && as_port != 80 {
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
            if proto == "udp" {
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
            let mut global = false;
            if let Some(to) = get(e, "to") {
                let to = to
                    .as_sequence()
                    .ok_or_else(|| invalid(format!("{ep}.to"), "must be a list"))?;
                for (j, t) in to.iter().enumerate() {
                    let tp = format!("{ep}.to[{j}]");
                    let t = mapping(t, &tp)?;
                    if get(t, "global").and_then(Value::as_bool) == Some(true) {
                        global = true;
                    } else if get(t, "service").is_some() {
                        w.skip(
                            format!("{tp}.service"),
                            "service-to-service traffic needs multi-service jobs, not supported \
                             yet",
                        );
                    }
                    w.unknown_keys(&tp, t, &["global", "service", "ip"]);
                    if get(t, "ip").is_some() {
                        w.skip(format!("{tp}.ip"), "leased IPs are not supported");
                    }
                }
            }
            if !global {
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
    if !exposes.is_empty() {
        *kind_service = true;
        spec.insert(s("expose"), Value::Sequence(exposes));
    }
    Ok(())
}

fn convert_resources(w: &mut Walk, path: &str, compute: &Mapping) -> Result<Mapping, SdlError> {
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

    // Storage: one mapping or a list; the ephemeral volumes add up to the job's disk.
    let mut disk: u64 = 0;
    let volumes: Vec<&Value> = match get(res, "storage") {
        Some(Value::Sequence(list)) => list.iter().collect(),
        Some(v @ Value::Mapping(_)) => vec![v],
        Some(_) => {
            return Err(invalid(
                format!("{rp}.storage"),
                "must be a mapping or a list",
            ));
        }
        None => Vec::new(),
    };
    for (i, v) in volumes.iter().enumerate() {
        let vp = format!("{rp}.storage[{i}]");
        let v = mapping(v, &vp)?;
        let persistent = get(v, "attributes")
            .and_then(Value::as_mapping)
            .and_then(|a| get(a, "persistent"))
            .is_some_and(|p| p.as_bool() == Some(true) || p.as_str() == Some("true"));
        if persistent {
            w.skip(&vp, "persistent volumes are not supported yet");
            continue;
        }
        let size = scalar(
            get(v, "size").ok_or_else(|| invalid(format!("{vp}.size"), "is missing"))?,
            &format!("{vp}.size"),
        )?;
        let size = Mebibytes::parse(&size).map_err(|e| invalid(format!("{vp}.size"), e))?;
        disk = disk.saturating_add(size.0);
    }
    if disk == 0 {
        return Err(invalid(
            format!("{rp}.storage"),
            "has no ephemeral storage; gpunet needs the job's disk size",
        ));
    }
    out.insert(s("disk"), s(&format!("{disk}Mi")));

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
    Ok(out)
}

/// The regions and the service's price denom (if priced) of a placement.
fn convert_placement(
    w: &mut Walk,
    path: &str,
    placement: &Mapping,
    service: &str,
) -> Result<(Vec<String>, Option<String>), SdlError> {
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
    let mut denom = None;
    if let Some(pricing) = get(placement, "pricing") {
        let pp = format!("{path}.pricing");
        let pricing = mapping(pricing, &pp)?;
        if let Some(price) = get(pricing, service) {
            let price = mapping(price, &format!("{pp}.{service}"))?;
            denom = Some(
                get(price, "denom")
                    .map(|d| scalar(d, &format!("{pp}.{service}.denom")))
                    .transpose()?
                    .unwrap_or_else(|| "uakt".into()),
            );
        }
    }
    Ok((regions, denom))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_made_valid() {
        assert_eq!(job_name("Web.App"), "web-app");
        assert_eq!(job_name(""), "sdl");
        assert_eq!(job_name(&"x".repeat(100)).len(), 64);
    }
}
