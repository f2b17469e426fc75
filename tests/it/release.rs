//! A release as a security reviewer checks it (issue 26): `scripts/release` run once against a real OCI registry
//! (distribution, built by scripts/testenv/build-tools) on loopback, then judged with the real tools from outside.
//!
//! - Two clean clones of the commit give byte-identical binaries and the same image index digest (the release
//!   itself refuses otherwise; here the two work trees' outputs are compared again, and no build path is in a
//!   binary).
//! - cosign v3 (from the Go module proxy) verifies the index and both platform images with the release's public
//!   key, refuses another key, and refuses the tag once it is moved to another digest.
//! - `cosign verify-attestation` yields the CycloneDX SBOM of each platform, listing exactly the crates of
//!   `cargo tree -e normal` for that target, and a SLSA provenance naming the commit and Cargo.lock's sha256.
//! - The chart is pulled from `oci://`, its signature verifies, its versions are Cargo.toml's, and `helm install`
//!   from the registry into the test cluster creates a Deployment running the released image by digest.
//! - The dependency list cargo-auditable embedded is read back from each binary as a scanner reads it (the ELF
//!   section `.dep-v0`, zlib-compressed JSON).
//! - The licence policy (scripts/deny.toml) passes for this project and refuses the fixture workspace
//!   tests/fixtures/disallowed-licence, whose app depends on a GPL-3.0-only crate.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::support::registry::Registry;
use crate::support::{cluster, project_root, tool, unique};
use serde_json::Value;

const ARCHES: [(&str, &str); 2] = [
    ("amd64", "x86_64-unknown-linux-musl"),
    ("arm64", "aarch64-unknown-linux-musl"),
];

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What `scripts/release` made (its release.json), the registry it published to, and its work directory.
struct Release {
    registry: Registry,
    work: PathBuf,
    info: Value,
}

impl Release {
    fn field(&self, name: &str) -> String {
        self.info[name]
            .as_str()
            .unwrap_or_else(|| panic!("release.json lacks {name}: {}", self.info))
            .to_string()
    }
    fn image(&self) -> String {
        self.field("image")
    }
    fn index(&self) -> String {
        format!("{}@{}", self.image(), self.field("index_digest"))
    }
    fn platform(&self, arch: &str) -> String {
        format!(
            "{}@{}",
            self.image(),
            self.info["platforms"][arch].as_str().unwrap()
        )
    }
    /// The `arch` binary that the clean clone `run` ("a" or "b") built.
    fn binary(&self, run: &str, arch: &str) -> Vec<u8> {
        std::fs::read(self.work.join(format!(
            "{run}/target/image/image-pull-secrets-provisioner-{arch}"
        )))
        .unwrap()
    }
    fn public_key(&self) -> PathBuf {
        self.field("public_key").into()
    }
}

fn release_work() -> PathBuf {
    std::env::temp_dir().join(format!("ipsp-release-{}", std::process::id()))
}

/// `scripts/release --registry 127.0.0.1:PORT/ipsp`, once for all the tests here.
fn release() -> &'static Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    RELEASE.get_or_init(|| {
        let work = release_work();
        let registry = Registry::start_removing(&[&work]);
        let output = Command::new(project_root().join("scripts/release"))
            .args(["--registry", &format!("{}/ipsp", registry.address)])
            .arg("--work")
            .arg(&work)
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/release runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "scripts/release failed:\n{stdout}");
        println!("{stdout}");
        // What it prints is what a user pastes.
        assert!(stdout.contains("cosign verify --key "), "{stdout}");
        assert!(stdout.contains("helm install "), "{stdout}");
        let info: Value =
            serde_json::from_slice(&std::fs::read(work.join("release.json")).unwrap()).unwrap();
        Release {
            registry,
            work,
            info,
        }
    })
}

fn cosign(args: &[&str]) -> Output {
    Command::new(tool("cosign"))
        .args(args)
        // No user's cosign or docker configuration leaks in.
        .env("HOME", std::env::temp_dir().join("ipsp-release-home"))
        .env("COSIGN_PASSWORD", "")
        .output()
        .expect("cosign runs")
}

fn verify(key: &Path, reference: &str) -> Output {
    cosign(&[
        "verify",
        "--key",
        key.to_str().unwrap(),
        "--insecure-ignore-tlog=true",
        reference,
    ])
}

#[test]
fn two_clean_clones_give_identical_binaries_and_the_same_index_digest() {
    let release = release();
    for (arch, _) in ARCHES {
        let (a, b) = (release.binary("a", arch), release.binary("b", arch));
        assert!(a == b, "the two {arch} binaries differ");
        // Neither clone's path, nor cargo's home, is in the binary.
        for leak in [
            release.work.join("a").display().to_string(),
            release.work.join("b").display().to_string(),
            std::env::var("CARGO_HOME").unwrap_or_else(|_| {
                format!("{}/.cargo", std::env::var("HOME").unwrap_or_default())
            }),
        ] {
            assert!(
                !a.windows(leak.len()).any(|w| w == leak.as_bytes()),
                "the {arch} binary holds the path {leak}"
            );
        }
    }
    let version = env!("CARGO_PKG_VERSION");
    let digest = |run: &str| {
        std::fs::read_to_string(release.work.join(format!(
            "{run}/target/image/image-pull-secrets-provisioner-{version}.digest"
        )))
        .unwrap()
        .trim()
        .to_string()
    };
    assert_eq!(digest("a"), digest("b"));
    assert_eq!(digest("a"), release.field("index_digest"));
    // The registry serves exactly that index.
    let index = manifest(
        &release.registry,
        "ipsp/image-pull-secrets-provisioner",
        &release.field("index_digest"),
    );
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
}

/// A manifest from the registry, by digest or tag.
fn manifest(registry: &Registry, repository: &str, reference: &str) -> Value {
    serde_json::from_slice(&manifest_bytes(registry, repository, reference)).unwrap()
}

#[test]
fn cosign_verifies_the_index_and_both_platforms_with_the_public_key_and_no_other() {
    let release = release();
    let other = std::env::temp_dir().join(format!("ipsp-other-key-{}", std::process::id()));
    std::fs::create_dir_all(&other).unwrap();
    let generated = Command::new(tool("cosign"))
        .arg("generate-key-pair")
        .current_dir(&other)
        .env("COSIGN_PASSWORD", "")
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", text(&generated));
    let mut references = vec![release.index()];
    references.extend(ARCHES.iter().map(|(arch, _)| release.platform(arch)));
    for reference in &references {
        let good = verify(&release.public_key(), reference);
        assert!(
            good.status.success(),
            "{reference} does not verify: {}",
            text(&good)
        );
        // A signature (not only an attestation, whose bundle cosign v3's `verify` accepts too) names this digest.
        let payloads: Vec<Value> = String::from_utf8_lossy(&good.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .flat_map(|v| v.as_array().cloned().unwrap_or_default())
            .collect();
        let digest = reference.rsplit('@').next().unwrap();
        assert!(
            payloads.iter().any(
                |p| p["critical"]["image"]["docker-manifest-digest"] == digest
                    && p["critical"]["type"] == "https://sigstore.dev/cosign/sign/v1"
            ),
            "{}",
            text(&good)
        );
        let bad = verify(&other.join("cosign.pub"), reference);
        assert!(
            !bad.status.success(),
            "{reference} verifies with another key: {}",
            text(&bad)
        );
    }
    let _ = std::fs::remove_dir_all(&other);
}

#[test]
fn a_tag_moved_to_another_digest_no_longer_verifies() {
    let release = release();
    let repository = "ipsp/image-pull-secrets-provisioner";
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    // A tag of this test's own (the release's tag stays), first on the released index: it verifies.
    let index_body = manifest_bytes(
        &release.registry,
        repository,
        &release.field("index_digest"),
    );
    put_manifest(&release.registry, repository, "moving", INDEX, &index_body);
    let tag = format!("{}:moving", release.image());
    let before = verify(&release.public_key(), &tag);
    assert!(before.status.success(), "{}", text(&before));

    // Moved: the same index with one annotation more is another digest, which nobody signed.
    let mut moved: Value = serde_json::from_slice(&index_body).unwrap();
    moved["annotations"] = serde_json::json!({"moved": "yes"});
    put_manifest(
        &release.registry,
        repository,
        "moving",
        INDEX,
        &serde_json::to_vec(&moved).unwrap(),
    );
    let after = verify(&release.public_key(), &tag);
    assert!(
        !after.status.success(),
        "the moved tag still verifies: {}",
        text(&after)
    );
}

fn manifest_bytes(registry: &Registry, repository: &str, reference: &str) -> Vec<u8> {
    let mut response = ureq::get(&format!(
        "http://{}/v2/{repository}/manifests/{reference}",
        registry.address
    ))
    .header(
        "Accept",
        "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
    )
    .call()
    .expect("the manifest");
    response.body_mut().read_to_vec().unwrap()
}

fn put_manifest(
    registry: &Registry,
    repository: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) {
    let response = ureq::put(&format!(
        "http://{}/v2/{repository}/manifests/{reference}",
        registry.address
    ))
    .header("Content-Type", media_type)
    .send(body);
    assert!(
        response.is_ok(),
        "PUT {repository}:{reference}: {response:?}"
    );
}

/// The in-toto statements of one predicate type attached to `reference`, verified with the release's key.
fn attestations(release: &Release, kind: &str, reference: &str) -> Vec<Value> {
    use base64::Engine;
    let output = cosign(&[
        "verify-attestation",
        "--key",
        release.public_key().to_str().unwrap(),
        "--insecure-ignore-tlog=true",
        "--type",
        kind,
        reference,
    ]);
    assert!(
        output.status.success(),
        "verify-attestation {kind} {reference}: {}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|envelope| {
            let payload = base64::engine::general_purpose::STANDARD
                .decode(envelope["payload"].as_str().expect("a DSSE envelope"))
                .unwrap();
            serde_json::from_slice(&payload).unwrap()
        })
        .collect()
}

/// The crates of `cargo tree -e normal` for a target, as "name version".
fn cargo_tree(target: &str) -> BTreeSet<String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree", "--locked", "-e", "normal", "--target", target, "--prefix", "none", "--format",
            "{p}",
        ])
        .current_dir(project_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap();
            let version = words.next().unwrap().trim_start_matches('v');
            format!("{name} {version}")
        })
        .collect()
}

#[test]
fn the_attested_sbom_lists_exactly_the_normal_dependencies_and_the_provenance_names_the_commit() {
    let release = release();
    let commit = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(project_root())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert_eq!(release.field("commit"), commit);
    let lock = std::fs::read(project_root().join("Cargo.lock")).unwrap();
    let lock_sha = {
        use sha2::{Digest, Sha256};
        Sha256::digest(&lock)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    for (arch, target) in ARCHES {
        let statements = attestations(release, "cyclonedx", &release.platform(arch));
        assert_eq!(statements.len(), 1, "{statements:?}");
        let statement = &statements[0];
        assert_eq!(statement["predicateType"], "https://cyclonedx.org/bom");
        let digest = release.info["platforms"][arch].as_str().unwrap();
        assert_eq!(
            format!(
                "sha256:{}",
                statement["subject"][0]["digest"]["sha256"]
                    .as_str()
                    .unwrap()
            ),
            digest
        );
        let bom = &statement["predicate"];
        assert_eq!(bom["bomFormat"], "CycloneDX", "{bom}");
        let mut listed: BTreeSet<String> = bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c["name"].as_str().unwrap(),
                    c["version"].as_str().unwrap()
                )
            })
            .collect();
        let root = &bom["metadata"]["component"];
        listed.insert(format!(
            "{} {}",
            root["name"].as_str().unwrap(),
            root["version"].as_str().unwrap()
        ));
        assert_eq!(listed, cargo_tree(target), "the {arch} SBOM");

        let provenance = attestations(release, "slsaprovenance1", &release.platform(arch));
        assert_eq!(provenance.len(), 1, "{provenance:?}");
        check_provenance(&provenance[0], &commit, &lock_sha);
    }
    let provenance = attestations(release, "slsaprovenance1", &release.index());
    assert_eq!(provenance.len(), 1, "{provenance:?}");
    check_provenance(&provenance[0], &commit, &lock_sha);
}

fn check_provenance(statement: &Value, commit: &str, lock_sha: &str) {
    assert_eq!(
        statement["predicateType"], "https://slsa.dev/provenance/v1",
        "{statement}"
    );
    let predicate = &statement["predicate"];
    let deps = predicate["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert!(
        deps.iter().any(|d| d["digest"]["gitCommit"] == commit),
        "{predicate}"
    );
    assert!(
        deps.iter()
            .any(|d| d["uri"] == "Cargo.lock" && d["digest"]["sha256"] == lock_sha),
        "{predicate}"
    );
    assert!(
        predicate["buildDefinition"]["externalParameters"]["command"]
            .as_str()
            .unwrap()
            .starts_with("scripts/release --registry ")
    );
    assert_eq!(predicate["runDetails"]["builder"]["id"], "scripts/release");
}

fn helm(args: &[&str]) -> Output {
    let home = std::env::temp_dir().join(format!("ipsp-release-helm-{}", std::process::id()));
    Command::new(tool("helm"))
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("helm runs")
}

#[test]
fn the_chart_from_oci_is_signed_pins_the_released_image_and_installs() {
    let release = release();
    let version = env!("CARGO_PKG_VERSION");
    let chart = release.field("chart");
    let chart_ref = format!(
        "{}@{}",
        chart.trim_start_matches("oci://"),
        release.field("chart_digest")
    );
    let signed = verify(&release.public_key(), &chart_ref);
    assert!(signed.status.success(), "{}", text(&signed));
    let by_tag = verify(
        &release.public_key(),
        &format!("{}:{version}", chart.trim_start_matches("oci://")),
    );
    assert!(by_tag.status.success(), "{}", text(&by_tag));

    // helm show: the chart's version and appVersion are Cargo.toml's; its default image is the release's digest.
    let shown = helm(&["show", "all", &chart, "--version", version, "--plain-http"]);
    assert!(shown.status.success(), "{}", text(&shown));
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    let field = |name: &str| {
        shown
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(|v| v.trim_matches('"').to_string())
    };
    assert_eq!(field("version").as_deref(), Some(version), "{shown}");
    assert_eq!(field("appVersion").as_deref(), Some(version), "{shown}");
    assert!(
        shown.contains(&format!("digest: \"{}\"", release.field("index_digest"))),
        "{shown}"
    );

    let cluster = cluster();
    let ns = cluster.namespace("oci-chart");
    let name = format!("oci{}x{}", std::process::id(), unique());
    let installed = helm(&[
        "install",
        &name,
        &chart,
        "--version",
        version,
        "--plain-http",
        "-n",
        &ns,
        "--kubeconfig",
        cluster.admin_kubeconfig.to_str().unwrap(),
    ]);
    assert!(installed.status.success(), "{}", text(&installed));
    let image = cluster.kubectl(&[
        "-n",
        &ns,
        "get",
        "deployment",
        &format!("{name}-image-pull-secrets-provisioner"),
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image.trim(), release.index());
    let removed = helm(&[
        "uninstall",
        &name,
        "-n",
        &ns,
        "--kubeconfig",
        cluster.admin_kubeconfig.to_str().unwrap(),
    ]);
    assert!(removed.status.success(), "{}", text(&removed));
}

#[test]
fn the_chart_and_the_crate_have_one_version() {
    let chart = std::fs::read_to_string(
        project_root().join("manifests/helm/image-pull-secrets-provisioner/Chart.yaml"),
    )
    .unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        chart.contains(&format!("\nversion: {version}\n")),
        "{chart}"
    );
    assert!(
        chart.contains(&format!("\nappVersion: \"{version}\"\n")),
        "{chart}"
    );
}

/// The bytes of an ELF64 little-endian section, found by name as a scanner does.
fn elf_section(file: &[u8], wanted: &str) -> Option<Vec<u8>> {
    let u16_at = |o: usize| u16::from_le_bytes(file[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(file[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(file[o..o + 8].try_into().unwrap()) as usize;
    assert_eq!(&file[..4], b"\x7fELF");
    assert_eq!(file[4], 2, "ELF64");
    assert_eq!(file[5], 1, "little-endian");
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let names = u64_at(header(shstrndx) + 0x18);
    (0..shnum).find_map(|i| {
        let h = header(i);
        let name_at = names + u32_at(h);
        let end = name_at + file[name_at..].iter().position(|&b| b == 0)?;
        (&file[name_at..end] == wanted.as_bytes()).then(|| {
            let (offset, size) = (u64_at(h + 0x18), u64_at(h + 0x20));
            file[offset..offset + size].to_vec()
        })
    })
}

#[test]
fn each_binary_embeds_its_dependency_list_for_scanners() {
    let release = release();
    for (arch, target) in ARCHES {
        let binary = release.binary("a", arch);
        let compressed = elf_section(&binary, ".dep-v0")
            .unwrap_or_else(|| panic!("the {arch} binary has no .dep-v0 section"));
        // zlib, as cargo-auditable writes it; Python's zlib inflates it (no decompressor in this crate).
        let mut python = Command::new("python3")
            .args([
                "-c",
                "import sys, zlib; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            python.stdin.take().unwrap().write_all(&compressed).unwrap();
        }
        let inflated = python.wait_with_output().unwrap();
        assert!(inflated.status.success());
        let list: Value = serde_json::from_slice(&inflated.stdout).unwrap();
        let embedded = |kind: &str| -> BTreeSet<String> {
            list["packages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["kind"].as_str().unwrap_or("runtime") == kind)
                .map(|p| {
                    format!(
                        "{} {}",
                        p["name"].as_str().unwrap(),
                        p["version"].as_str().unwrap()
                    )
                })
                .collect()
        };
        let (runtime, build) = (embedded("runtime"), embedded("build"));
        assert!(
            runtime.contains(&format!(
                "image-pull-secrets-provisioner {}",
                env!("CARGO_PKG_VERSION")
            )),
            "{runtime:?}"
        );
        // Every crate cargo compiles into the binary is listed (proc-macros, which run in the compiler, as
        // build-time ones). The list is cargo metadata's resolve, so it also names optional crates that no enabled
        // feature compiles (ureq's cookie_store, url, ...): a scanner over-reports rather than misses.
        let tree = cargo_tree(target);
        let missing: Vec<&String> = tree
            .iter()
            .filter(|c| !runtime.contains(*c) && !build.contains(*c))
            .collect();
        assert!(missing.is_empty(), "{arch}: not in .dep-v0: {missing:?}");
        for name in ["rustls", "ring", "ureq", "serde_json"] {
            assert!(
                runtime.iter().any(|p| p.split(' ').next() == Some(name)),
                "{arch}: {name} missing from {runtime:?}"
            );
        }
    }
}

fn cargo_deny(dir: &Path) -> Output {
    Command::new(env!("CARGO"))
        .args([
            "deny",
            "--log-level",
            "error",
            "--config",
            project_root().join("scripts/deny.toml").to_str().unwrap(),
            "--locked",
            "check",
            "licenses",
            "bans",
            "sources",
        ])
        .current_dir(dir)
        .env(
            "PATH",
            format!(
                "{}:{}",
                tool("cargo-deny")
                    .parent()
                    .expect("the tools directory")
                    .display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("cargo deny runs")
}

#[test]
fn the_licence_policy_passes_this_project_and_refuses_a_gpl_dependency() {
    let ours = cargo_deny(&project_root());
    assert!(ours.status.success(), "{}", text(&ours));
    let fixture = cargo_deny(&project_root().join("tests/fixtures/disallowed-licence"));
    assert!(!fixture.status.success(), "{}", text(&fixture));
    let said = text(&fixture);
    assert!(said.contains("GPL-3.0"), "{said}");
    assert!(said.contains("fixture-copyleft"), "{said}");
}
