//! The scratch premise: the image built by `scripts/image` holds nothing but the static binary, and that
//! binary provisions secrets from an otherwise empty root directory — no shell, no /etc, no CA files — using
//! the in-cluster configuration (environment and the ServiceAccount mount), as it would in a pod.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use image_pull_secrets_provisioner::kube::types::ServiceAccount;
use support::controller::{
    controller_kubeconfig, service_account_token, CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT,
};
use support::google::{member, GoogleFake};
use support::{cluster, eventually, project_root, unique};

const PROVIDER: &str =
    "projects/123456/locations/global/workloadIdentityPools/pool-1/providers/prov-1";
const EMAIL: &str = "puller@proj.iam.gserviceaccount.com";

/// Builds the image and returns its OCI archive.
fn build_image() -> PathBuf {
    let output = Command::new(project_root().join("scripts/image"))
        .args(["--tag", "image-pull-secrets-provisioner:test"])
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/image runs");
    assert!(output.status.success(), "scripts/image failed");
    project_root().join("target/image/image-pull-secrets-provisioner-test.oci.tar")
}

/// Unpacks the image's layers into `root`, as a container runtime would.
fn unpack(archive: &Path, root: &Path) -> serde_json::Value {
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
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("a manifest");
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
            if path.is_dir() {
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
fn the_scratch_image_runs_with_nothing_but_its_binary_and_the_service_account_mount() {
    let archive = build_image();
    let root =
        std::env::temp_dir().join(format!("ipsp-rootfs-{}-{}", std::process::id(), unique()));
    let config = unpack(&archive, &root);

    // The image: one file, the static binary; a non-root user; the binary as entrypoint; OCI labels.
    assert_eq!(
        files_under(&root),
        vec!["image-pull-secrets-provisioner".to_string()]
    );
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

    let ns = cluster.namespace("scratch");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &["scratch-aud"])
        .allow(EMAIL, &member(&ns, "app"))
        .start();
    let port = cluster.server.rsplit(':').next().unwrap().to_string();
    let log_path = root.with_extension("log");
    let mut child = Command::new(if Path::new("/usr/sbin/chroot").exists() {
        "/usr/sbin/chroot"
    } else {
        "/usr/bin/chroot"
    })
    .arg("--userspec=65532:65532")
    .arg(&root)
    .arg("/image-pull-secrets-provisioner")
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
            Duration::from_secs(60),
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
