//! The README's install, upgrade, migration, rollback and uninstall commands, run as written (the blocks marked
//! `<!-- readme-test: NAME -->`) with bash from a directory that looks like the repository root, against a
//! control plane of this test's own — uninstalling deletes the namespace and ClusterRoles other tests use.
//! The original controller is stood in for by a Deployment of its name and its Lease. The private control plane
//! runs kube-controller-manager, whose namespace controller lets `kubectl delete -k` finish deleting the namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{project_root, unique, Cluster};

const NS: &str = "image-pull-secrets-provisioner-system";

/// The shell block after `<!-- readme-test: NAME -->`.
fn block(name: &str) -> String {
    let readme = std::fs::read_to_string(project_root().join("README.md")).unwrap();
    let marker = format!("<!-- readme-test: {name} -->\n```sh\n");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no block {name}"))
        + marker.len();
    let end = start + readme[start..].find("\n```\n").unwrap();
    readme[start..end].to_string()
}

struct Shell {
    root: PathBuf,
    path: String,
    kubeconfig: PathBuf,
}

impl Shell {
    fn new(cluster: &Cluster) -> Shell {
        let root =
            std::env::temp_dir().join(format!("ipsp-readme-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::symlink(project_root().join("manifests"), root.join("manifests"))
            .unwrap();
        let helm = tool("helm");
        let path = format!(
            "{}:{}:{}",
            cluster.kubectl.parent().unwrap().display(),
            helm.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Shell {
            root,
            path,
            kubeconfig: cluster.admin_kubeconfig.clone(),
        }
    }

    /// Runs a README block; returns its stdout.
    fn run(&self, name: &str) -> String {
        let script = format!("set -euo pipefail\n{}\n", block(name));
        let output = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(&self.root)
            .env("PATH", &self.path)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CONFIG_HOME", self.root.join(".helm/config"))
            .env("HELM_CACHE_HOME", self.root.join(".helm/cache"))
            .env("HELM_DATA_HOME", self.root.join(".helm/data"))
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        assert!(
            output.status.success(),
            "README block {name} failed:\n{script}\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A control plane of this test's own, with kube-controller-manager; stopped when dropped.
struct OwnCluster {
    cluster: Cluster,
}

impl OwnCluster {
    fn start() -> OwnCluster {
        let dir = std::env::temp_dir().join(format!(
            "ipsp-readme-cluster-{}-{}",
            std::process::id(),
            unique()
        ));
        let status = Command::new(project_root().join("scripts/testenv/cluster"))
            .args(["up", "--dir"])
            .arg(&dir)
            .args(["--watch-pid", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("scripts/testenv/cluster runs");
        assert!(
            status.success(),
            "cluster up failed; logs in {}",
            dir.display()
        );
        OwnCluster {
            cluster: Cluster::load(&dir),
        }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(project_root().join("scripts/testenv/cluster"))
            .arg("down")
            .arg(&self.cluster.dir)
            .status();
    }
}

fn tool(name: &str) -> PathBuf {
    let output = Command::new(project_root().join("scripts/testenv/build-tools"))
        .arg(name)
        .stderr(Stdio::inherit())
        .output()
        .expect("build-tools runs");
    assert!(output.status.success());
    Path::new(String::from_utf8(output.stdout).unwrap().trim()).join(name)
}

fn get(cluster: &Cluster, args: &[&str]) -> Option<String> {
    let output = Command::new(&cluster.kubectl)
        .arg("--kubeconfig")
        .arg(&cluster.admin_kubeconfig)
        .args(args)
        .output()
        .unwrap();
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn image(cluster: &Cluster) -> String {
    cluster.kubectl(&[
        "-n",
        NS,
        "get",
        "deployment",
        "image-pull-secrets-provisioner",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
}

/// The original as the migration finds it: its Deployment and the Lease it holds.
fn install_the_original(cluster: &Cluster) {
    cluster.kubectl(&[
        "-n",
        NS,
        "create",
        "deployment",
        "controller-manager",
        "--image=controller:latest",
    ]);
    cluster.apply(&format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: b1b11bb0.preferred.jp\n  namespace: {NS}\nspec:\n  holderIdentity: controller-manager-7d9f_original\n  leaseDurationSeconds: 15\n"
    ));
}

fn replicas(cluster: &Cluster, deployment: &str) -> String {
    cluster.kubectl(&[
        "-n",
        NS,
        "get",
        "deployment",
        deployment,
        "-o",
        "jsonpath={.spec.replicas}",
    ])
}

#[test]
fn the_readmes_install_upgrade_migrate_and_uninstall_commands_work() {
    let own = OwnCluster::start();
    let cluster = &own.cluster;
    let shell = Shell::new(cluster);

    // Helm: install, upgrade.
    let notes = shell.run("helm-install");
    assert!(notes.contains("STATUS: deployed"), "{notes}");
    assert_eq!(
        image(cluster),
        "registry.example.com/image-pull-secrets-provisioner:0.1.0"
    );
    shell.run("helm-upgrade");
    assert_eq!(
        image(cluster),
        "registry.example.com/image-pull-secrets-provisioner:0.1.1"
    );

    // Migration from the original, then the rollback.
    install_the_original(cluster);
    let holder = shell.run("migrate");
    assert_eq!(replicas(cluster, "controller-manager"), "0");
    assert!(
        holder.ends_with("\ncontroller-manager-7d9f_original\n"),
        "{holder}"
    );
    shell.run("rollback");
    assert_eq!(replicas(cluster, "controller-manager"), "1");
    assert!(get(
        cluster,
        &[
            "-n",
            NS,
            "get",
            "deployment",
            "image-pull-secrets-provisioner"
        ]
    )
    .is_none());
    assert!(get(
        cluster,
        &["get", "clusterrole", "image-pull-secrets-provisioner"]
    )
    .is_none());

    // The migration to its end: install again, stop the original, remove it.
    shell.run("helm-install");
    shell.run("migrate");
    shell.run("migrate-cleanup");
    assert!(get(
        cluster,
        &["-n", NS, "get", "deployment", "controller-manager"]
    )
    .is_none());
    assert!(get(
        cluster,
        &[
            "-n",
            NS,
            "get",
            "deployment",
            "image-pull-secrets-provisioner"
        ]
    )
    .is_some());
    shell.run("helm-uninstall");
    assert!(get(
        cluster,
        &[
            "-n",
            NS,
            "get",
            "deployment",
            "image-pull-secrets-provisioner"
        ]
    )
    .is_none());

    // kustomize: install, upgrade, uninstall.
    shell.run("kustomize-install");
    assert_eq!(
        image(cluster),
        "registry.example.com/image-pull-secrets-provisioner:0.1.0"
    );
    for (kind, name) in [
        ("clusterrole", "image-pull-secrets-provisioner"),
        ("poddisruptionbudget", "image-pull-secrets-provisioner"),
        ("service", "image-pull-secrets-provisioner-metrics"),
        ("role", "image-pull-secrets-provisioner-leader-election"),
    ] {
        assert!(
            get(cluster, &["-n", NS, "get", kind, name]).is_some(),
            "{kind} {name}"
        );
    }
    shell.run("kustomize-upgrade");
    assert_eq!(
        image(cluster),
        "registry.example.com/image-pull-secrets-provisioner:0.1.1"
    );
    shell.run("kustomize-uninstall");
    assert!(get(
        cluster,
        &["get", "clusterrole", "image-pull-secrets-provisioner"]
    )
    .is_none());
    assert!(get(
        cluster,
        &[
            "-n",
            NS,
            "get",
            "deployment",
            "image-pull-secrets-provisioner"
        ]
    )
    .is_none());
}
