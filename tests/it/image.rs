//! The scratch premise: the image built by `scripts/image` holds nothing but the static binary (and `/manager`,
//! a link to it, where the original's Deployment looks), and that binary provisions secrets from an otherwise
//! empty root directory — no shell, no /etc, no CA files — using the in-cluster configuration (environment and
//! the ServiceAccount mount), as it would in a pod. For linux/amd64 and, under qemu-user, for linux/arm64: one
//! OCI image index holds both, and `scripts/image --push` puts that index into a real registry (distribution,
//! built by scripts/testenv/build-tools), from which it is read back by digest.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::controller::{
    controller_kubeconfig, service_account_token, CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT,
};
use crate::support::google::EMAIL;
use crate::support::google::PROVIDER;
use crate::support::google::{member, GoogleFake};
use crate::support::registry::Registry;
use crate::support::{cluster, eventually, project_root, unique};
use image_pull_secrets_provisioner::kube::types::ServiceAccount;

/// scripts/image, one run at a time (it rebuilds the same local manifest list); its stdout lines.
fn run_image_script(args: &[&str]) -> Vec<String> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let output = Command::new(project_root().join("scripts/image"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/image runs");
    assert!(output.status.success(), "scripts/image {args:?} failed");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Builds the image index (amd64 and arm64) once and returns its OCI archive.
fn build_image() -> PathBuf {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE
        .get_or_init(|| {
            run_image_script(&["--tag", "image-pull-secrets-provisioner:test"]);
            project_root().join("target/image/image-pull-secrets-provisioner-test.oci.tar")
        })
        .clone()
}

/// The image manifests of an image index, by architecture.
fn platforms(index: &serde_json::Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = index["manifests"]
        .as_array()
        .expect("an image index")
        .iter()
        .map(|m| {
            assert_eq!(m["platform"]["os"], "linux", "{m}");
            (
                m["platform"]["architecture"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

/// Unpacks the `arch` image's layers into `root`, as a container runtime would; returns its config.
fn unpack(archive: &Path, root: &Path, arch: &str) -> serde_json::Value {
    let oci = root.with_extension("oci");
    std::fs::create_dir_all(&oci).unwrap();
    std::fs::create_dir_all(root).unwrap();
    assert!(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&oci)
        .status()
        .unwrap()
        .success());
    let blob = |digest: &str| {
        oci.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let outer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    // The archive's index.json names one image index (the tag), which holds one manifest per platform.
    assert_eq!(outer["manifests"].as_array().unwrap().len(), 1, "{outer}");
    let index_digest = outer["manifests"][0]["digest"].as_str().unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(index_digest)).unwrap()).unwrap();
    let all = platforms(&index);
    assert_eq!(
        all.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["amd64", "arm64"]
    );
    let manifest_digest = &all.iter().find(|(a, _)| a == arch).unwrap().1;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest_digest)).unwrap()).unwrap();
    for layer in manifest["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().unwrap();
        assert!(Command::new("tar")
            .arg("-xf")
            .arg(blob(digest))
            .arg("-C")
            .arg(root)
            .status()
            .unwrap()
            .success());
    }
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    serde_json::from_slice(&std::fs::read(blob(config_digest)).unwrap()).unwrap()
}

fn files_under(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else {
                found.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found
}

#[test]
fn the_amd64_scratch_image_runs_with_nothing_but_its_binary_and_the_service_account_mount() {
    scratch_image_provisions("amd64");
}

/// The arm64 image under qemu-user: the emulator (a static binary itself) is copied into the otherwise
/// untouched root and runs the image's binary there.
#[test]
fn the_arm64_scratch_image_runs_under_qemu_user() {
    scratch_image_provisions("arm64");
}

#[test]
fn the_arm64_binary_answers_version_under_qemu_user() {
    build_image();
    let output = Command::new(qemu())
        .arg(project_root().join("target/image/image-pull-secrets-provisioner-arm64"))
        .arg("--version")
        .output()
        .expect("qemu-aarch64-static runs");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "image-pull-secrets-provisioner {}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let file = Command::new("file")
        .arg(project_root().join("target/image/image-pull-secrets-provisioner-arm64"))
        .output();
    if let Ok(file) = file {
        let text = String::from_utf8_lossy(&file.stdout);
        assert!(
            text.contains("ARM aarch64") && text.contains("statically linked"),
            "{text}"
        );
    }
}

/// Debian's qemu-user-static, installed by scripts/image when missing.
fn qemu() -> PathBuf {
    for path in ["/usr/bin/qemu-aarch64-static", "/usr/bin/qemu-aarch64"] {
        if Path::new(path).exists() {
            return PathBuf::from(path);
        }
    }
    panic!("qemu-aarch64-static is missing: scripts/image installs qemu-user-static when it builds arm64");
}

fn scratch_image_provisions(arch: &str) {
    let archive = build_image();
    let root = std::env::temp_dir().join(format!(
        "ipsp-rootfs-{arch}-{}-{}",
        std::process::id(),
        unique()
    ));
    let config = unpack(&archive, &root, arch);

    // The image: the static binary and /manager linking to it; a non-root user; the binary as entrypoint;
    // OCI labels that name this project.
    let mut files = files_under(&root);
    files.sort();
    assert_eq!(files, ["image-pull-secrets-provisioner", "manager"]);
    assert_eq!(
        std::fs::read_link(root.join("manager")).unwrap(),
        Path::new("image-pull-secrets-provisioner")
    );
    assert_eq!(config["architecture"], arch);
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/image-pull-secrets-provisioner"])
    );
    let labels = &config["config"]["Labels"];
    for label in [
        "org.opencontainers.image.source",
        "org.opencontainers.image.version",
        "org.opencontainers.image.licenses",
    ] {
        assert!(labels[label].is_string(), "label {label} missing: {labels}");
    }
    assert_eq!(
        labels["org.opencontainers.image.title"],
        "image-pull-secrets-provisioner"
    );
    assert!(
        !labels["org.opencontainers.image.source"]
            .as_str()
            .unwrap()
            .contains("pfnet"),
        "the source label names the original project: {labels}"
    );
    let size = std::fs::metadata(root.join("image-pull-secrets-provisioner"))
        .unwrap()
        .len();
    println!(
        "binary: {size} bytes; image archive: {} bytes",
        std::fs::metadata(&archive).unwrap().len()
    );

    // What the kubelet would mount: the controller's token, the cluster CA and the namespace.
    let cluster = cluster();
    let _ = controller_kubeconfig(); // applies the manifests' ServiceAccount and RBAC
    let mount = root.join("var/run/secrets/kubernetes.io/serviceaccount");
    std::fs::create_dir_all(&mount).unwrap();
    std::fs::write(
        mount.join("token"),
        service_account_token(cluster, CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT),
    )
    .unwrap();
    std::fs::copy(&cluster.ca_file, mount.join("ca.crt")).unwrap();
    std::fs::write(mount.join("namespace"), CONTROLLER_NAMESPACE).unwrap();
    assert!(!root.join("etc").exists() && !root.join("bin").exists());

    let ns = cluster.namespace(&format!("scratch-{arch}"));
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &["scratch-aud"])
        .allow(EMAIL, &member(&ns, "app"))
        .start();
    let port = cluster.server.rsplit(':').next().unwrap().to_string();
    let log_path = root.with_extension("log");
    // The original's Deployment runs /manager: so does this test, for the link's sake.
    let mut program = vec!["/manager".to_string()];
    if arch == "arm64" {
        std::fs::copy(qemu(), root.join("qemu-aarch64-static")).unwrap();
        program.insert(0, "/qemu-aarch64-static".to_string());
    }
    let mut child = Command::new(if Path::new("/usr/sbin/chroot").exists() {
        "/usr/sbin/chroot"
    } else {
        "/usr/bin/chroot"
    })
    .arg("--userspec=65532:65532")
    .arg(&root)
    .args(&program)
    .args([
        "--namespace",
        &ns,
        "--metrics-bind-address",
        "127.0.0.1:0",
        "--health-probe-bind-address",
        "127.0.0.1:0",
    ])
    .args([
        "--google-sts-endpoint",
        &fake.endpoint,
        "--google-iamcredentials-endpoint",
        &fake.endpoint,
    ])
    .env_clear()
    .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    .env("KUBERNETES_SERVICE_PORT", &port)
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log_path).unwrap())
    .spawn()
    .expect("chroot runs");

    cluster.kubectl(&["-n", &ns, "create", "serviceaccount", "app"]);
    cluster.kubectl(&[
        "-n",
        &ns,
        "annotate",
        "serviceaccount",
        "app",
        "imagepullsecrets.preferred.jp/registry=europe-docker.pkg.dev",
        "imagepullsecrets.preferred.jp/audience=scratch-aud",
        &format!("imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider={PROVIDER}"),
        &format!("imagepullsecrets.preferred.jp/googlecloud-service-account-email={EMAIL}"),
    ]);
    let admin = cluster.admin();
    let attached = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(
            Duration::from_secs(120),
            "the secret provisioned from the scratch root",
            || {
                let sa: ServiceAccount = admin.get(Some(&ns), "app").ok()?;
                sa.image_pull_secrets?
                    .iter()
                    .any(|s| s.name == "imagepullsecret-app")
                    .then_some(())
            },
        )
    }));
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&root);
    assert!(attached.is_ok(), "controller log:\n{log}");
    assert!(log.contains("initial lists complete"), "{log}");
}

fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// `scripts/image --push` puts one index into a real registry; read back by the digest the script printed,
/// it holds an image for each architecture whose config says so and whose layer holds that binary.
#[test]
fn push_puts_one_index_with_both_architectures_into_a_real_registry() {
    build_image();
    let registry = Registry::start();
    let reference = format!(
        "{}/ipsp/image-pull-secrets-provisioner:test",
        registry.address
    );
    // A tag of its own, so the archive the scratch tests unpack is not rewritten meanwhile.
    let lines = run_image_script(&[
        "--tag",
        "image-pull-secrets-provisioner:push",
        "--push",
        &reference,
    ]);
    let digest = lines.last().expect("the digest").clone();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{lines:?}"
    );

    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    let (content_type, body) = registry
        .get(
            &format!("/v2/ipsp/image-pull-secrets-provisioner/manifests/{digest}"),
            INDEX,
        )
        .expect("the index by digest");
    assert_eq!(content_type, INDEX);
    assert_eq!(
        sha256_digest(&body),
        digest,
        "the registry served other bytes"
    );
    let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let all = platforms(&index);
    assert_eq!(
        all.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["amd64", "arm64"]
    );
    // The tag resolves to the same index.
    let (_, by_tag) = registry
        .get(
            "/v2/ipsp/image-pull-secrets-provisioner/manifests/test",
            INDEX,
        )
        .unwrap();
    assert_eq!(sha256_digest(&by_tag), digest);
    for (arch, manifest_digest) in &all {
        let (_, body) = registry
            .get(
                &format!("/v2/ipsp/image-pull-secrets-provisioner/manifests/{manifest_digest}"),
                MANIFEST,
            )
            .unwrap();
        assert_eq!(&sha256_digest(&body), manifest_digest);
        let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let config_digest = manifest["config"]["digest"].as_str().unwrap();
        let (_, config) = registry
            .get(
                &format!("/v2/ipsp/image-pull-secrets-provisioner/blobs/{config_digest}"),
                "*/*",
            )
            .unwrap();
        assert_eq!(sha256_digest(&config), config_digest);
        let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(&config["architecture"], arch.as_str());
        for layer in manifest["layers"].as_array().unwrap() {
            let layer_digest = layer["digest"].as_str().unwrap();
            let (_, blob) = registry
                .get(
                    &format!("/v2/ipsp/image-pull-secrets-provisioner/blobs/{layer_digest}"),
                    "*/*",
                )
                .unwrap();
            assert_eq!(sha256_digest(&blob), layer_digest, "{arch} layer");
        }
    }
}
