//! Akash SDL to a gpunet job spec (issue 14): each construct of SDL 2.0 either maps, with a
//! test here, or is reported by its path; a lossy conversion is refused unless asked for. The
//! SDL files are written here for these tests.

use gpunet_protocol::Amount;
use gpunet_protocol::jobspec::{ExposeProto, JobKind, Network, Seconds};
use gpunet_protocol::sdl::{SdlError, SdlOptions, convert};

fn opts() -> SdlOptions {
    SdlOptions {
        max_per_hour: Some(Amount::from_micros(2_000_000)),
        deposit: None,
        max_duration: None,
        lossy: false,
    }
}

fn lossy() -> SdlOptions {
    SdlOptions {
        lossy: true,
        ..opts()
    }
}

/// A one-service inference deployment on an H100, with every construct that maps.
const GPU_SDL: &str = r#"
version: "2.0"
services:
  llm:
    image: vllm/vllm-openai:v0.6.0
    command: ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    args: ["--model", "meta-llama/Llama-3.1-8B"]
    env:
      - HF_HOME=/cache
      - MAX_MODEL_LEN=8192
    expose:
      - port: 8000
        as: 80
        to:
          - global: true
profiles:
  compute:
    llm:
      resources:
        cpu:
          units: 8
        memory:
          size: 64Gi
        storage:
          - size: 100Gi
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: h100
                  ram: 80Gi
  placement:
    dc:
      attributes:
        region: us-west
      pricing:
        llm:
          denom: uakt
          amount: 100000
deployment:
  llm:
    dc:
      profile: llm
      count: 1
"#;

fn unmapped_paths(e: &SdlError) -> Vec<String> {
    match e {
        SdlError::Unmapped(list) => list.iter().map(|u| u.path.clone()).collect(),
        other => panic!("expected unmapped constructs, got {other}"),
    }
}

#[test]
fn a_gpu_service_maps_whole_and_an_h100_constraint_stays_an_h100_constraint() {
    let c = convert(GPU_SDL, &opts()).expect("converts");
    assert!(c.unmapped.is_empty(), "{:?}", c.unmapped);
    let s = &c.spec;
    assert_eq!(s.name, "llm");
    assert_eq!(s.kind, JobKind::Service);
    assert_eq!(s.run.image.as_deref(), Some("vllm/vllm-openai:v0.6.0"));
    assert_eq!(s.run.network, Network::Egress);
    assert_eq!(
        s.run.command,
        [
            "python3",
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            "meta-llama/Llama-3.1-8B"
        ]
    );
    assert_eq!(s.run.env.get("HF_HOME").map(String::as_str), Some("/cache"));
    assert_eq!(
        s.run.env.get("MAX_MODEL_LEN").map(String::as_str),
        Some("8192")
    );
    assert_eq!(s.resources.cpu.0, 8_000);
    assert_eq!(s.resources.memory.0, 64 * 1024);
    assert_eq!(s.resources.disk.0, 100 * 1024);
    assert_eq!(s.resources.gpu.count, 1);
    assert_eq!(s.resources.gpu.models, ["h100"]);
    assert_eq!(s.resources.gpu.vram.0, 80 * 1024);
    assert_eq!(s.placement.regions, ["us-west"]);
    assert_eq!(s.expose.len(), 1);
    assert_eq!(s.expose[0].port, 8000);
    assert_eq!(s.expose[0].proto, ExposeProto::Http, "exposed as 80: HTTP");
    assert_eq!(s.pricing.max_per_hour, Amount::from_micros(2_000_000));
    assert_eq!(s.pricing.deposit, Amount::from_micros(2_000_000), "an hour");
    assert_eq!(s.limits.max_duration, Seconds(86_400), "a day");
    // The same constraint on chain: the order asks for an h100.
    let terms = s.order_terms();
    assert_eq!(terms.resources.gpu.count, 1);
    assert_eq!(terms.resources.gpu.models, ["h100"]);
    assert_eq!(terms.resources.gpu.vram_mib_min, 80 * 1024);
    // The printed spec parses back to the same spec.
    let again = gpunet_protocol::jobspec::JobSpec::parse_yaml(&c.yaml).expect("yaml");
    assert_eq!(&again, s);
}

#[test]
fn prices_in_akash_denoms_need_a_usd_price_and_options_set_the_rest() {
    let e = convert(
        GPU_SDL,
        &SdlOptions {
            max_per_hour: None,
            ..opts()
        },
    )
    .expect_err("no usd price");
    assert!(
        e.to_string().contains("--max-per-hour") && e.to_string().contains("uakt"),
        "{e}"
    );
    let c = convert(
        GPU_SDL,
        &SdlOptions {
            deposit: Some(Amount::from_micros(10_000_000)),
            max_duration: Some(Seconds(3_600)),
            ..opts()
        },
    )
    .expect("converts");
    assert_eq!(c.spec.pricing.deposit, Amount::from_micros(10_000_000));
    assert_eq!(c.spec.limits.max_duration, Seconds(3_600));
}

#[test]
fn cpu_memory_and_storage_forms_map() {
    let sdl = GPU_SDL
        .replace("units: 8", "units: 0.5")
        .replace("size: 64Gi", "size: 512Mi")
        .replace(
            "          - size: 100Gi",
            "          - size: 1Gi\n          - size: 512Mi",
        )
        .replace("units: 1\n", "units: 0\n");
    let c = convert(&sdl, &opts()).expect("converts");
    assert_eq!(c.spec.resources.cpu.0, 500);
    assert_eq!(c.spec.resources.memory.0, 512);
    assert_eq!(
        c.spec.resources.disk.0,
        1024 + 512,
        "ephemeral volumes add up"
    );
    assert_eq!(c.spec.resources.gpu.count, 0, "no GPU asked");
    // A single storage mapping instead of a list; cpu as thousandths.
    let sdl = GPU_SDL.replace("units: 8", "units: 250m").replace(
        "        storage:\n          - size: 100Gi",
        "        storage:\n          size: 2Gi",
    );
    let c = convert(&sdl, &opts()).expect("converts");
    assert_eq!(c.spec.resources.cpu.0, 250);
    assert_eq!(c.spec.resources.disk.0, 2048);
}

#[test]
fn a_plain_tcp_port_and_a_port_not_exposed_globally() {
    let sdl = GPU_SDL.replace(
        "      - port: 8000\n        as: 80\n        to:\n          - global: true\n",
        "      - port: 5432\n        to:\n          - global: true\n      - port: 9000\n",
    );
    let c = convert(&sdl, &opts()).expect("converts");
    assert_eq!(c.spec.expose.len(), 1, "only the global one is published");
    assert_eq!(c.spec.expose[0].port, 5432);
    assert_eq!(c.spec.expose[0].proto, ExposeProto::Tcp);
    // No global expose at all: a batch job without a network.
    let sdl = GPU_SDL.replace("          - global: true\n", "          - global: false\n");
    let c = convert(&sdl, &opts()).expect("converts");
    assert!(c.spec.expose.is_empty());
    assert_eq!(c.spec.kind, JobKind::Batch);
    assert_eq!(c.spec.run.network, Network::None);
}

#[test]
fn every_construct_that_does_not_map_is_named_and_refused_unless_lossy() {
    let sdl = r#"
version: "2.0"
services:
  web:
    image: nginx:1.27
    command: ["nginx", "-g", "daemon off;"]
    expose:
      - port: 80
        as: 8080
        accept: ["www.example.com"]
        http_options: { max_body_size: 1048576 }
        to:
          - global: true
          - service: db
      - port: 53
        proto: udp
        to:
          - global: true
    params:
      storage:
        data: { mount: /data }
    credentials: { host: ghcr.io, username: u, password: p }
    dependencies:
      - service: db
  db:
    image: postgres:16
    command: ["postgres"]
profiles:
  compute:
    web:
      resources:
        cpu: { units: 1 }
        memory: { size: 1Gi }
        storage:
          - size: 1Gi
          - name: data
            size: 10Gi
            attributes: { persistent: true, class: beta2 }
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: a100
                  interface: sxm
              amd:
                - model: mi300x
  placement:
    dc:
      attributes: { region: eu-central, tier: community }
      signedBy: { anyOf: ["akash1abc"] }
      pricing:
        web: { denom: uact, amount: 1000 }
deployment:
  web:
    dc: { profile: web, count: 3 }
  db:
    dc: { profile: web, count: 1 }
endpoints:
  myip: { kind: ip }
"#;
    let e = convert(sdl, &opts()).expect_err("not all of it maps");
    let paths = unmapped_paths(&e);
    for expected in [
        "endpoints",
        "deployment.db",
        "deployment.web.dc.count",
        "services.web.credentials",
        "services.web.dependencies",
        "services.web.params.storage",
        "services.web.expose[0].as",
        "services.web.expose[0].accept",
        "services.web.expose[0].http_options",
        "services.web.expose[0].to[1].service",
        "services.web.expose[1].proto",
        "profiles.compute.web.resources.storage[1]",
        "profiles.compute.web.resources.gpu.attributes.vendor.amd",
        "profiles.compute.web.resources.gpu.attributes.vendor.nvidia[0].interface",
        "profiles.placement.dc.attributes.tier",
        "profiles.placement.dc.signedBy",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} not reported: {paths:?}"
        );
    }
    assert!(e.to_string().contains("--lossy"), "{e}");
    // Lossy: converted, with the same list, and what maps is there.
    let c = convert(sdl, &lossy()).expect("lossy converts");
    assert_eq!(
        c.unmapped
            .iter()
            .map(|u| u.path.clone())
            .collect::<Vec<_>>(),
        paths
    );
    assert_eq!(c.spec.name, "web");
    assert_eq!(
        c.spec.resources.disk.0, 1024,
        "the persistent volume is left out"
    );
    assert_eq!(c.spec.resources.gpu.models, ["a100"]);
    assert_eq!(c.spec.placement.regions, ["eu-central"]);
    assert_eq!(c.spec.expose.len(), 1, "the UDP port is left out");
}

#[test]
fn unknown_keys_anywhere_are_named() {
    let sdl = GPU_SDL
        .replace("    image: vllm", "    shiny: yes\n    image: vllm")
        .replace("deployment:\n", "extra: 1\ndeployment:\n")
        .replace(
            "        cpu:\n",
            "        fpga: { units: 1 }\n        cpu:\n",
        );
    let paths = unmapped_paths(&convert(&sdl, &opts()).expect_err("unknown keys"));
    for expected in [
        "extra",
        "services.llm.shiny",
        "profiles.compute.llm.resources.fpga",
    ] {
        assert!(paths.iter().any(|p| p == expected), "{expected}: {paths:?}");
    }
}

#[test]
fn what_cannot_be_read_is_refused_with_where() {
    for (sdl, says) in [
        ("version: \"3.0\"\nservices: {}\n", "version"),
        ("[1, 2", "not YAML"),
        ("- a\n- b\n", "must be a mapping"),
        (&GPU_SDL.replace("version: \"2.0\"", "version: \"2.1\"").replace("    image: vllm/vllm-openai:v0.6.0\n", "") as &str, "image"),
        (&GPU_SDL.replace("    command: [\"python3\", \"-m\", \"vllm.entrypoints.openai.api_server\"]\n    args: [\"--model\", \"meta-llama/Llama-3.1-8B\"]\n", ""), "entrypoint"),
        (&GPU_SDL.replace("      - HF_HOME=/cache", "      - HF_HOME"), "NAME=value"),
        (&GPU_SDL.replace("units: 8", "units: lots"), "cpu.units"),
        (&GPU_SDL.replace("size: 64Gi", "size: 64 gigs"), "memory.size"),
        (&GPU_SDL.replace("port: 8000", "port: 99999"), "port"),
        (&GPU_SDL.replace("      profile: llm", "      profile: nope"), "profiles.compute.nope"),
    ] {
        let e = convert(sdl, &opts()).expect_err(says);
        assert!(e.to_string().contains(says), "{says}: {e}");
    }
}
