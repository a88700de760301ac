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

/// `command` replaces the image's entrypoint and `args` its default arguments, as Akash (on
/// Kubernetes) has them: args alone keep the image's entrypoint, and neither runs the image as
/// it is, as most deployments do.
#[test]
fn a_service_without_a_command_runs_its_images_entrypoint_with_its_args() {
    let without = GPU_SDL.replace(
        "    command: [\"python3\", \"-m\", \"vllm.entrypoints.openai.api_server\"]\n",
        "",
    );
    let c = convert(&without, &opts()).expect("converts");
    assert!(c.spec.run.command.is_empty(), "{:?}", c.spec.run);
    assert_eq!(c.spec.run.args, ["--model", "meta-llama/Llama-3.1-8B"]);
    let bare = without.replace("    args: [\"--model\", \"meta-llama/Llama-3.1-8B\"]\n", "");
    assert_ne!(bare, without, "the args were removed");
    let c = convert(&bare, &opts()).expect("converts");
    assert!(c.spec.run.command.is_empty() && c.spec.run.args.is_empty());
    assert!(c.unmapped.is_empty(), "{:?}", c.unmapped);
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
        "deployment.web.dc.count",
        "services.web.credentials",
        "services.web.dependencies",
        "services.web.expose[0].as",
        "services.web.expose[0].accept",
        "services.web.expose[0].http_options",
        "services.web.expose[1].proto",
        // The speed class of web's volume, and the volume db (on the same profile) does not
        // mount.
        "profiles.compute.web.resources.storage[1].attributes.class",
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
    // A second service and an expose to it map: db is a service of the job. So does web's
    // persistent storage, mounted by its params.
    for maps in [
        "deployment.db",
        "services.web.expose[0].to[1].service",
        "services.web.params.storage",
        "services.web.params.storage.data",
    ] {
        assert!(!paths.iter().any(|p| p == maps), "{maps}: {paths:?}");
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
    assert_eq!(c.spec.volumes.len(), 1, "web mounts its persistent storage");
    assert_eq!(c.spec.volumes[0].name, "data");
    assert_eq!(c.spec.volumes[0].mount, "/data");
    assert_eq!(
        c.spec.resources.disk.0,
        1024 + 10 * 1024,
        "the volume counts within web's disk"
    );
    assert_eq!(c.spec.resources.gpu.models, ["a100"]);
    assert_eq!(c.spec.placement.regions, ["eu-central"]);
    assert_eq!(c.spec.expose.len(), 1, "the UDP port is left out");
    assert_eq!(c.spec.services.len(), 1, "db beside web");
    assert_eq!(c.spec.services[0].name, "db");
    assert_eq!(c.spec.services[0].count, 1);
    assert!(
        c.spec.services[0].volumes.is_empty(),
        "db mounts nothing: its volume is left out"
    );
    assert_eq!(
        c.spec.services[0].resources.disk.0, 1024,
        "and not counted in its disk"
    );
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
        (
            &GPU_SDL
                .replace("version: \"2.0\"", "version: \"2.1\"")
                .replace("    image: vllm/vllm-openai:v0.6.0\n", "") as &str,
            "image",
        ),
        (
            &GPU_SDL.replace("      - HF_HOME=/cache", "      - HF_HOME"),
            "NAME=value",
        ),
        (&GPU_SDL.replace("units: 8", "units: lots"), "cpu.units"),
        (
            &GPU_SDL.replace("size: 64Gi", "size: 64 gigs"),
            "memory.size",
        ),
        (&GPU_SDL.replace("port: 8000", "port: 99999"), "port"),
        (
            &GPU_SDL.replace("      profile: llm", "      profile: nope"),
            "profiles.compute.nope",
        ),
    ] {
        let e = convert(sdl, &opts()).expect_err(says);
        assert!(e.to_string().contains(says), "{says}: {e}");
    }
}

/// A web front end published on port 80 and an API of three replicas that only the front end
/// reaches, by name. The API comes first in the file: the main service is the published one.
const TWO_SERVICE_SDL: &str = r#"
version: "2.0"
services:
  api:
    image: example/api:2
    command: ["api-server"]
    args: ["--port", "9000"]
    env:
      - LOG_LEVEL=info
    expose:
      - port: 9000
        to:
          - service: web
  web:
    image: example/web:1
    command: ["web", "--upstream", "http://api:9000"]
    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web-small:
      resources:
        cpu: { units: 0.5 }
        memory: { size: 256Mi }
        storage: [{ size: 512Mi }]
    api-medium:
      resources:
        cpu: { units: 2 }
        memory: { size: 2Gi }
        storage: { size: 1Gi }
  placement:
    dc:
      attributes: { region: eu-west }
      pricing:
        api: { denom: uakt, amount: 300 }
        web: { denom: uakt, amount: 100 }
    other:
      pricing:
        api: { denom: uakt, amount: 200 }
deployment:
  api:
    dc: { profile: api-medium, count: 3 }
  web:
    dc: { profile: web-small, count: 1 }
"#;

#[test]
fn two_services_become_one_job_with_the_published_one_as_its_run_and_the_other_replicated() {
    let c = convert(TWO_SERVICE_SDL, &opts()).expect("converts");
    assert!(c.unmapped.is_empty(), "{:?}", c.unmapped);
    let s = &c.spec;
    s.validate().expect("the converted spec is valid");
    // The main service: web, published to the world, though api comes first.
    assert_eq!(
        s.name, "web",
        "the others reach the main service by the job's name"
    );
    assert_eq!(s.kind, JobKind::Service);
    assert_eq!(s.run.image.as_deref(), Some("example/web:1"));
    assert_eq!(s.run.command, ["web", "--upstream", "http://api:9000"]);
    assert_eq!(s.run.network, Network::Egress, "its port is published");
    assert_eq!(s.expose.len(), 1);
    assert_eq!(s.expose[0].port, 80);
    assert_eq!(s.expose[0].proto, ExposeProto::Http);
    assert_eq!(s.resources.cpu.0, 500);
    assert_eq!(s.resources.memory.0, 256);
    assert_eq!(s.resources.disk.0, 512);
    assert_eq!(s.placement.regions, ["eu-west"]);
    // The API: three replicas with resources each, reached by name only.
    assert_eq!(s.services.len(), 1);
    let api = &s.services[0];
    assert_eq!(api.name, "api");
    assert_eq!(api.count, 3);
    assert_eq!(api.run.image.as_deref(), Some("example/api:2"));
    assert_eq!(api.run.command, ["api-server", "--port", "9000"]);
    // Akash containers have a writable root, and the images are made for one.
    assert!(s.run.writable_root && api.run.writable_root);
    // And Docker's default capabilities (less NET_RAW), which the order asks of its provider.
    assert_eq!(s.run.capabilities, gpunet_protocol::Capabilities::Baseline);
    assert_eq!(
        api.run.capabilities,
        gpunet_protocol::Capabilities::Baseline
    );
    assert_eq!(
        s.order_terms().capabilities,
        gpunet_protocol::Capabilities::Baseline
    );
    assert_eq!(
        api.run.env.get("LOG_LEVEL").map(String::as_str),
        Some("info")
    );
    assert!(
        api.expose.is_empty(),
        "exposed to web only: nothing published"
    );
    assert_eq!(api.run.network, Network::None);
    assert_eq!(api.resources.cpu.0, 2_000);
    assert_eq!(api.resources.memory.0, 2 * 1024);
    assert_eq!(api.resources.disk.0, 1024);
    // The order asks for the sum: web once, api three times.
    let terms = s.order_terms();
    assert_eq!(terms.resources.cpu_millis, 500 + 3 * 2_000);
    assert_eq!(terms.resources.memory_mib, 256 + 3 * 2 * 1024);
    assert_eq!(terms.resources.disk_mib, 512 + 3 * 1024);
    let again = gpunet_protocol::jobspec::JobSpec::parse_yaml(&c.yaml).expect("yaml");
    assert_eq!(&again, s);

    // The API published too: it is first with a global expose, so it is the main service, and
    // web a service whose port is published, with egress.
    let sdl = TWO_SERVICE_SDL
        .replace(
            "          - service: web\n",
            "          - service: web\n          - global: true\n",
        )
        .replace("count: 3", "count: 1");
    let c = convert(&sdl, &opts()).expect("converts");
    assert!(c.unmapped.is_empty(), "{:?}", c.unmapped);
    c.spec.validate().expect("valid");
    assert_eq!(c.spec.name, "api");
    assert_eq!(c.spec.expose[0].port, 9000);
    assert_eq!(c.spec.expose[0].proto, ExposeProto::Tcp);
    let web = &c.spec.services[0];
    assert_eq!(web.name, "web");
    assert_eq!(web.count, 1);
    assert_eq!(web.run.network, Network::Egress);
    assert_eq!(web.expose.len(), 1);
    assert_eq!(web.expose[0].port, 80);
    assert_eq!(web.expose[0].proto, ExposeProto::Http);

    // Nothing published: a batch job, its run the first service (so its replicas do not map).
    let sdl = TWO_SERVICE_SDL.replace("          - global: true\n", "          - service: api\n");
    let e = convert(&sdl, &opts()).expect_err("api is the main service");
    assert_eq!(unmapped_paths(&e), ["deployment.api.dc.count"]);
    let c = convert(&sdl.replace("count: 3", "count: 1"), &opts()).expect("converts");
    c.spec.validate().expect("valid");
    assert_eq!(c.spec.kind, JobKind::Batch);
    assert_eq!(c.spec.name, "api");
    assert_eq!(c.spec.services[0].name, "web");
}

fn unmapped_why(e: &SdlError, path: &str) -> String {
    match e {
        SdlError::Unmapped(list) => list
            .iter()
            .find(|u| u.path == path)
            .map(|u| u.why.clone())
            .unwrap_or_else(|| panic!("{path} not reported: {list:?}")),
        other => panic!("expected unmapped constructs, got {other}"),
    }
}

#[test]
fn replicas_of_the_main_service_are_named_and_left_out_when_lossy() {
    let sdl = TWO_SERVICE_SDL.replace(
        "dc: { profile: web-small, count: 1 }",
        "dc: { profile: web-small, count: 2 }",
    );
    let e = convert(&sdl, &opts()).expect_err("the main service runs once");
    assert_eq!(unmapped_paths(&e), ["deployment.web.dc.count"]);
    let why = unmapped_why(&e, "deployment.web.dc.count");
    assert!(why.contains("2 replicas") && why.contains("once"), "{why}");
    let c = convert(&sdl, &lossy()).expect("lossy converts");
    c.spec.validate().expect("valid");
    assert_eq!(c.spec.name, "web");
    assert_eq!(
        c.spec.services[0].count, 3,
        "the other service keeps its count"
    );
}

#[test]
fn services_in_different_placement_groups_are_named_as_gpunet_runs_a_job_on_one_provider() {
    let sdl = TWO_SERVICE_SDL.replace(
        "dc: { profile: api-medium, count: 3 }",
        "other: { profile: api-medium, count: 3 }",
    );
    let e = convert(&sdl, &opts()).expect_err("two placement groups");
    assert_eq!(unmapped_paths(&e), ["deployment.api.other"]);
    let why = unmapped_why(&e, "deployment.api.other");
    assert!(
        why.contains("one provider") && why.contains("\"dc\""),
        "{why}"
    );
    let c = convert(&sdl, &lossy()).expect("lossy converts");
    assert_eq!(
        c.spec.placement.regions,
        ["eu-west"],
        "the main one's group"
    );
    assert_eq!(c.spec.services[0].name, "api");
}

#[test]
fn an_expose_to_a_service_the_sdl_does_not_define_is_named() {
    let sdl = TWO_SERVICE_SDL.replace(
        "          - service: web\n",
        "          - service: frontend\n",
    );
    let e = convert(&sdl, &opts()).expect_err("no frontend");
    assert_eq!(unmapped_paths(&e), ["services.api.expose[0].to[0].service"]);
    assert!(
        unmapped_why(&e, "services.api.expose[0].to[0].service").contains("\"frontend\""),
        "{e}"
    );
}

#[test]
fn what_a_multi_service_sdl_cannot_say_is_named() {
    // The API remapped to port 80 for web, nine replicas, a name that is not a DNS label, and
    // a UDP port only web reaches (which maps: the private network carries it).
    let sdl = TWO_SERVICE_SDL
        .replace(
            "      - port: 9000\n        to:\n          - service: web\n",
            "      - port: 9000\n        as: 80\n        to:\n          - service: web\n      \
             - port: 5353\n        proto: udp\n        to:\n          - service: web\n",
        )
        .replace("count: 3", "count: 9")
        .replace("  api:\n", "  api_v2:\n")
        .replace("        api: {", "        api_v2: {");
    let e = convert(&sdl, &opts()).expect_err("not all of it maps");
    let mut paths = unmapped_paths(&e);
    paths.sort();
    assert_eq!(
        paths,
        [
            "deployment.api_v2.dc.count",
            "services.api_v2",
            "services.api_v2.expose[0].as",
        ]
    );
    assert!(unmapped_why(&e, "deployment.api_v2.dc.count").contains("at most 8"));
    assert!(unmapped_why(&e, "services.api_v2").contains("\"api-v2\""));
    assert!(unmapped_why(&e, "services.api_v2.expose[0].as").contains("own port 9000"));
    let c = convert(&sdl, &lossy()).expect("lossy converts");
    c.spec.validate().expect("valid");
    assert_eq!(c.spec.services[0].name, "api-v2");
    assert_eq!(c.spec.services[0].count, 8);
    assert!(c.spec.services[0].expose.is_empty());

    // Past gpunet's bounds with the counts: the spec's own check says so.
    let sdl = sdl.replace("count: 9", "count: 8").replace(
        "dc: { profile: web-small, count: 1 }",
        "dc: { profile: web-small, count: 1 }\n  db:\n    dc: { profile: api-medium, count: 8 }",
    );
    let sdl = sdl.replace(
        "profiles:\n",
        "  db:\n    image: example/db:1\n    command: [db]\nprofiles:\n",
    );
    let e = convert(&sdl, &lossy()).expect_err("17 containers");
    assert!(e.to_string().contains("17 containers"), "{e}");
}

/// Inference on H100s: a published server and two replicas of an embedder, each on its own
/// H100.
const GPU_TWO_SERVICE_SDL: &str = r#"
version: "2.1"
services:
  llm:
    image: example/llm-server:1
    command: ["serve", "--port", "8000"]
    expose:
      - port: 8000
        as: 80
        to:
          - global: true
  embedder:
    image: example/embedder:1
    command: ["embed"]
    expose:
      - port: 7000
        to:
          - service: llm
profiles:
  compute:
    big:
      resources:
        cpu: { units: 8 }
        memory: { size: 64Gi }
        storage: [{ size: 100Gi }]
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: h100
                  ram: 80Gi
    small:
      resources:
        cpu: { units: 4 }
        memory: { size: 16Gi }
        storage: [{ size: 20Gi }]
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: h100
  placement:
    dc:
      pricing:
        llm: { denom: uakt, amount: 100000 }
        embedder: { denom: uakt, amount: 50000 }
deployment:
  llm:
    dc: { profile: big, count: 1 }
  embedder:
    dc: { profile: small, count: 2 }
"#;

#[test]
fn an_h100_constraint_across_two_services_stays_an_h100_constraint() {
    let c = convert(GPU_TWO_SERVICE_SDL, &opts()).expect("converts");
    assert!(c.unmapped.is_empty(), "{:?}", c.unmapped);
    let s = &c.spec;
    s.validate().expect("valid");
    assert_eq!(s.name, "llm");
    assert_eq!(s.resources.gpu.models, ["h100"]);
    assert_eq!(s.resources.gpu.vram.0, 80 * 1024);
    let embedder = &s.services[0];
    assert_eq!(embedder.name, "embedder");
    assert_eq!(embedder.count, 2);
    assert_eq!(embedder.resources.gpu.count, 1, "per replica");
    assert_eq!(embedder.resources.gpu.models, ["h100"]);
    let terms = s.order_terms();
    assert_eq!(
        terms.resources.gpu.count, 3,
        "one for llm, one per embedder"
    );
    assert_eq!(terms.resources.gpu.models, ["h100"]);
    assert_eq!(terms.resources.gpu.vram_mib_min, 80 * 1024);

    // Models that differ: named, and left out of that service when lossy.
    let sdl = GPU_TWO_SERVICE_SDL.replace(
        "                - model: h100\n  placement:",
        "                - model: a100\n  placement:",
    );
    let path = "profiles.compute.small.resources.gpu.attributes.vendor.nvidia";
    let e = convert(&sdl, &opts()).expect_err("a100 and h100 in one job");
    assert_eq!(unmapped_paths(&e), [path]);
    let why = unmapped_why(&e, path);
    assert!(why.contains("a100") && why.contains("h100"), "{why}");
    let c = convert(&sdl, &lossy()).expect("lossy converts");
    c.spec.validate().expect("valid");
    assert!(c.spec.services[0].resources.gpu.models.is_empty());
    assert_eq!(c.spec.order_terms().resources.gpu.models, ["h100"]);
}

/// An app published on port 80 and a database whose data lives on persistent storage of the
/// beta2 class, mounted where the database keeps it.
const DB_SDL: &str = r#"
version: "2.0"
services:
  app:
    image: example/app:3
    command: ["app", "--db", "postgres://db:5432/app"]
    expose:
      - port: 8080
        as: 80
        to:
          - global: true
  db:
    image: example/postgres:16
    command: ["postgres"]
    env:
      - PGDATA=/var/lib/postgresql/data/pgdata
    expose:
      - port: 5432
        to:
          - service: app
    params:
      storage:
        pg_data:
          mount: /var/lib/postgresql/data
profiles:
  compute:
    app:
      resources:
        cpu: { units: 1 }
        memory: { size: 512Mi }
        storage: { size: 1Gi }
    db:
      resources:
        cpu: { units: 2 }
        memory: { size: 4Gi }
        storage:
          - size: 2Gi
          - name: pg_data
            size: 10Gi
            attributes:
              persistent: true
              class: beta2
  placement:
    dc:
      pricing:
        app: { denom: uakt, amount: 100 }
        db: { denom: uakt, amount: 200 }
deployment:
  app:
    dc: { profile: app, count: 1 }
  db:
    dc: { profile: db, count: 1 }
"#;

#[test]
fn persistent_storage_a_service_mounts_becomes_its_volume_counted_within_its_disk() {
    use gpunet_protocol::jobspec::{JobSpec, Mebibytes, VolumeSpec};
    // The speed class does not map: named, and left out when lossy.
    let class = "profiles.compute.db.resources.storage[1].attributes.class";
    let e = convert(DB_SDL, &opts()).expect_err("beta2 is a storage class");
    assert_eq!(unmapped_paths(&e), [class]);
    let why = unmapped_why(&e, class);
    assert!(why.contains("beta2") && why.contains("--lossy"), "{why}");
    let c = convert(DB_SDL, &lossy()).expect("lossy converts");
    assert_eq!(
        c.unmapped
            .iter()
            .map(|u| u.path.as_str())
            .collect::<Vec<_>>(),
        [class]
    );
    let s = &c.spec;
    s.validate().expect("the converted spec is valid");
    assert_eq!(s.name, "app");
    assert!(s.volumes.is_empty(), "app has no persistent storage");
    assert_eq!(s.resources.disk, Mebibytes(1024));
    let db = &s.services[0];
    assert_eq!(db.name, "db");
    assert_eq!(
        db.volumes,
        [VolumeSpec {
            name: "pg-data".into(),
            size: Mebibytes(10 * 1024),
            mount: "/var/lib/postgresql/data".into(),
        }],
        "the storage's name made a DNS label, its size, its mount"
    );
    assert_eq!(
        db.resources.disk,
        Mebibytes(2 * 1024 + 10 * 1024),
        "ephemeral storage plus the volume, which counts within disk"
    );
    assert_eq!(s.order_terms().resources.disk_mib, 1024 + 12 * 1024);
    let again = JobSpec::parse_yaml(&c.yaml).expect("yaml");
    assert_eq!(&again, s);

    // With the default class, or none, and persistent written as a string, it all maps.
    for sdl in [
        DB_SDL.replace("class: beta2", "class: default"),
        DB_SDL.replace(
            "              persistent: true\n              class: beta2\n",
            "              persistent: \"true\"\n",
        ),
    ] {
        let c = convert(&sdl, &opts()).expect("converts");
        assert!(c.unmapped.is_empty(), "{:?}", c.unmapped);
        c.spec.validate().expect("valid");
        assert_eq!(c.spec.services[0].volumes[0].size, Mebibytes(10 * 1024));
        assert_eq!(c.spec.services[0].resources.disk, Mebibytes(12 * 1024));
    }

    // The database as the main service: its volume is the job's own.
    let sdl = DB_SDL
        .replace("class: beta2", "class: default")
        .replace(
            "        as: 80\n        to:\n          - global: true\n",
            "        to:\n          - service: db\n",
        )
        .replace("          - service: app\n", "          - global: true\n");
    let c = convert(&sdl, &opts()).expect("converts");
    assert!(c.unmapped.is_empty(), "{:?}", c.unmapped);
    c.spec.validate().expect("valid");
    assert_eq!(c.spec.name, "db");
    assert_eq!(c.spec.volumes.len(), 1);
    assert_eq!(c.spec.volumes[0].mount, "/var/lib/postgresql/data");
    assert_eq!(c.spec.resources.disk, Mebibytes(12 * 1024));
    assert!(c.spec.services[0].volumes.is_empty());
}

#[test]
fn storage_that_cannot_be_mounted_as_a_volume_is_named() {
    use gpunet_protocol::jobspec::Mebibytes;
    let base = DB_SDL.replace("class: beta2", "class: default");
    let mount = "services.db.params.storage.pg_data";

    // Persistent storage the service does not mount: nothing to mount.
    let sdl = base.replace(
        "    params:\n      storage:\n        pg_data:\n          mount: /var/lib/postgresql/data\n",
        "",
    );
    let e = convert(&sdl, &opts()).expect_err("mounted nowhere");
    let storage = "profiles.compute.db.resources.storage[1]";
    assert_eq!(unmapped_paths(&e), [storage]);
    let why = unmapped_why(&e, storage);
    assert!(
        why.contains("mounted nowhere") && why.contains("services.db.params.storage"),
        "{why}"
    );
    let c = convert(&sdl, &lossy()).expect("lossy converts");
    c.spec.validate().expect("valid");
    assert!(c.spec.services[0].volumes.is_empty());
    assert_eq!(
        c.spec.services[0].resources.disk,
        Mebibytes(2 * 1024),
        "left out of the disk too"
    );

    // Read-only: gpunet mounts volumes read-write.
    let sdl = base.replace(
        "          mount: /var/lib/postgresql/data\n",
        "          mount: /var/lib/postgresql/data\n          readOnly: true\n",
    );
    let e = convert(&sdl, &opts()).expect_err("readOnly");
    let read_only = format!("{mount}.readOnly");
    assert_eq!(unmapped_paths(&e), [read_only.as_str()]);
    assert!(unmapped_why(&e, &read_only).contains("read-write"));
    let c = convert(&sdl, &lossy()).expect("lossy converts");
    c.spec.validate().expect("valid");
    assert_eq!(c.spec.services[0].volumes.len(), 1, "mounted read-write");
    // readOnly: false is what gpunet does.
    let c = convert(&sdl.replace("readOnly: true", "readOnly: false"), &opts()).expect("maps");
    assert!(c.unmapped.is_empty(), "{:?}", c.unmapped);

    // A storage the profile does not have, and a mount of ephemeral storage.
    let sdl = base
        .replace(
            "          mount: /var/lib/postgresql/data\n",
            "          mount: /var/lib/postgresql/data\n        cache:\n          mount: /cache\n        \
             scratch:\n          mount: /scratch\n",
        )
        .replace("          - size: 2Gi\n", "          - name: scratch\n            size: 2Gi\n");
    let e = convert(&sdl, &opts()).expect_err("no cache, scratch ephemeral");
    let (cache, scratch) = (
        "services.db.params.storage.cache",
        "services.db.params.storage.scratch",
    );
    assert_eq!(unmapped_paths(&e), [cache, scratch]);
    let why = unmapped_why(&e, cache);
    assert!(
        why.contains("profiles.compute.db has no storage named \"cache\""),
        "{why}"
    );
    let why = unmapped_why(&e, scratch);
    assert!(
        why.contains("ephemeral") && why.contains("only persistent volumes"),
        "{why}"
    );
    let c = convert(&sdl, &lossy()).expect("lossy converts");
    c.spec.validate().expect("valid");
    let db = &c.spec.services[0];
    assert_eq!(db.volumes.len(), 1, "only the persistent storage");
    assert_eq!(db.volumes[0].name, "pg-data");
    assert_eq!(db.resources.disk, Mebibytes(12 * 1024));

    // A RAM disk (class ram) mounted as shared memory: neither maps, nor counts in the disk.
    let sdl = base
        .replace(
            "          mount: /var/lib/postgresql/data\n",
            "          mount: /var/lib/postgresql/data\n        shm:\n          mount: /dev/shm\n",
        )
        .replace(
            "          - size: 2Gi\n",
            "          - size: 2Gi\n          - name: shm\n            size: 1Gi\n            \
             attributes: { class: ram }\n",
        );
    let e = convert(&sdl, &opts()).expect_err("ram");
    let (class, shm) = (
        "profiles.compute.db.resources.storage[1].attributes.class",
        "services.db.params.storage.shm",
    );
    assert_eq!(unmapped_paths(&e), [class, shm]);
    assert!(unmapped_why(&e, class).contains("RAM disk"));
    assert!(unmapped_why(&e, shm).contains("RAM disk"));
    let c = convert(&sdl, &lossy()).expect("lossy converts");
    c.spec.validate().expect("valid");
    assert_eq!(c.spec.services[0].volumes.len(), 1);
    assert_eq!(c.spec.services[0].resources.disk, Mebibytes(12 * 1024));
}

#[test]
fn mount_paths_the_spec_refuses_are_errors_naming_the_sdl_mount() {
    let base = DB_SDL.replace("class: beta2", "class: default");
    let at = "services.db.params.storage.pg_data.mount";
    for (mount, says) in [
        ("/tmp", "/tmp would cover or sit in /tmp"),
        ("/outputs/db", "would cover or sit in /outputs"),
        ("/checkpoints", "would cover or sit in /checkpoints"),
        ("/inputs", "would cover or sit in /inputs"),
        ("/proc/x", "would cover or sit in /proc"),
        ("/sys", "would cover or sit in /sys"),
        ("/dev/shm", "would cover or sit in /dev"),
        ("var/lib/postgresql/data", "must be an absolute path"),
        ("/data/../etc", "must be an absolute path"),
        ("/", "must be an absolute path"),
    ] {
        let sdl = base.replace(
            "mount: /var/lib/postgresql/data",
            &format!("mount: {mount}"),
        );
        for o in [opts(), lossy()] {
            let e = convert(&sdl, &o).expect_err(mount);
            match &e {
                SdlError::Invalid { path, why } => {
                    assert_eq!(path, at, "{mount}: {e}");
                    assert!(why.contains(says), "{mount}: {why}");
                    assert!(why.contains("services[0].volumes[0].mount"), "{why}");
                }
                other => panic!("{mount}: expected an error at {at}, got {other}"),
            }
        }
    }
    // The main service's volume: the spec's own volumes, named the same way.
    let sdl = base
        .replace(
            "        as: 80\n        to:\n          - global: true\n",
            "        to:\n          - service: db\n",
        )
        .replace("          - service: app\n", "          - global: true\n")
        .replace("mount: /var/lib/postgresql/data", "mount: /tmp/pg");
    let e = convert(&sdl, &opts()).expect_err("/tmp");
    assert!(
        e.to_string()
            .starts_with(&format!("{at}: /tmp/pg would cover or sit in /tmp")),
        "{e}"
    );
    // No mount at all.
    let sdl = base.replace(
        "          mount: /var/lib/postgresql/data\n",
        "          readOnly: false\n",
    );
    let e = convert(&sdl, &opts()).expect_err("no mount");
    assert!(
        e.to_string().starts_with(&format!("{at}: is missing")),
        "{e}"
    );
}
