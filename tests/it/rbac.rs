//! The RBAC of `manifests/` is exactly what the controller needs: with all of it, the whole scenario works
//! (provision, refresh, clean up, evict, events, lease); without any single verb of any rule, the controller
//! fails visibly, naming the forbidden call.
//!
//! Each run authenticates as its own ServiceAccount bound to a copy of the manifests' ClusterRole and Role
//! (minus one verb), and serves its own namespace, so the runs go on side by side.

use std::time::Duration;

use crate::support::controller::{service_account_token, Controller, CONTROLLER_NAMESPACE};
use crate::support::google::GoogleFake;
use crate::support::google::EMAIL;
use crate::support::google::PROVIDER;
use crate::support::{cluster, eventually, poll, project_root, Cluster};
use image_pull_secrets_provisioner::annotations::REASON_DECOMMISSIONED;
use image_pull_secrets_provisioner::events::{build_event, reference, EventType};
use image_pull_secrets_provisioner::kube::types::{Event, Lease, Pod, Secret, ServiceAccount};
use serde_json::{json, Value};

const AUDIENCE: &str = "rbac-aud";
const REGISTRY: &str = "europe-docker.pkg.dev";

/// The rules of a Role or ClusterRole in a manifest file, as JSON.
fn rules(file: &str, kind: &str) -> Vec<Value> {
    let path = project_root().join("manifests").join(file);
    let text = cluster().kubectl(&[
        "create",
        "--dry-run=client",
        "-o",
        "json",
        "-f",
        path.to_str().unwrap(),
    ]);
    // kubectl prints one JSON document per object.
    let role = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|doc| doc.expect("kubectl prints JSON"))
        .find(|doc| doc["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {file}"));
    role["rules"].as_array().unwrap().clone()
}

/// `rules` without `verb` on the rule at `index`.
fn without(rules: &[Value], index: usize, verb: &str) -> Vec<Value> {
    let mut rules = rules.to_vec();
    let verbs: Vec<Value> = rules[index]["verbs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| *v != verb)
        .cloned()
        .collect();
    if verbs.is_empty() {
        rules.remove(index);
    } else {
        rules[index]["verbs"] = json!(verbs);
    }
    rules
}

/// A ServiceAccount bound to `cluster_rules` cluster-wide and to `lease_rules` in the Lease namespace;
/// returns a kubeconfig for it.
fn identity(
    cluster: &Cluster,
    name: &str,
    cluster_rules: &[Value],
    lease_rules: &[Value],
) -> std::path::PathBuf {
    let ns = CONTROLLER_NAMESPACE;
    let subject = json!([{"kind": "ServiceAccount", "name": name, "namespace": ns}]);
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": cluster_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}, "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": lease_rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}, "subjects": subject},
    ]});
    crate::support::controller::apply_manifest(cluster, "namespace.yaml");
    cluster.apply(&objects.to_string());
    let token = service_account_token(cluster, ns, name);
    cluster.kubeconfig_for_token(name, &token)
}

fn annotate(cluster: &Cluster, ns: &str, sa: &str, extra: &[&str]) {
    let mut args = vec![
        "-n".to_string(),
        ns.to_string(),
        "annotate".to_string(),
        "--overwrite".to_string(),
        "serviceaccount".to_string(),
        sa.to_string(),
        format!("imagepullsecrets.preferred.jp/registry={REGISTRY}"),
        format!("imagepullsecrets.preferred.jp/audience={AUDIENCE}"),
        format!("imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider={PROVIDER}"),
        format!("imagepullsecrets.preferred.jp/googlecloud-service-account-email={EMAIL}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.kubectl(&args);
}

/// A secret as this controller would have written it for `sa` (owned), with `principal`.
fn owned_secret(name: &str, sa: &ServiceAccount, principal: &str) -> Value {
    let config = base64(&format!(
        r#"{{"auths":{{"{REGISTRY}":{{"username":"oauth2accesstoken","password":"old"}}}}}}"#
    ));
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name, "namespace": sa.metadata.namespace,
            "labels": {"imagepullsecrets.preferred.jp/service-account": sa.metadata.name},
            "annotations": {"imagepullsecrets.preferred.jp/principal": principal, "imagepullsecrets.preferred.jp/expires-at": "2099-01-01T00:00:00Z"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ServiceAccount", "name": sa.metadata.name, "uid": sa.metadata.uid, "controller": true}]},
        "data": {".dockerconfigjson": config}})
}

fn base64(text: &str) -> String {
    crate::support::base64_encode(text.as_bytes())
}

/// Everything the controller does, set up in `ns`: a new secret (create), a stale owned secret (update), an
/// unwanted owned secret (delete), a name taken by a foreign secret (get), a ReplicaSet pod stuck pulling
/// without the secret (pods list, eviction), and events throughout.
fn scenario(cluster: &Cluster, ns: &str) {
    let admin = cluster.admin();
    for sa in ["app", "stale", "old", "clash"] {
        cluster.kubectl(&["-n", ns, "create", "serviceaccount", sa]);
    }
    let stale: ServiceAccount = admin.get(Some(ns), "stale").unwrap();
    let old: ServiceAccount = admin.get(Some(ns), "old").unwrap();
    cluster.apply(
        &owned_secret(
            "imagepullsecret-stale",
            &stale,
            "someone-else@proj.iam.gserviceaccount.com",
        )
        .to_string(),
    );
    cluster.apply(
        &owned_secret(
            "imagepullsecret-old-1",
            &old,
            "gone@proj.iam.gserviceaccount.com",
        )
        .to_string(),
    );
    cluster.kubectl(&[
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "taken",
        "--from-literal=k=v",
    ]);
    let replica_set = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"serviceAccountName": "app", "containers": [{"name": "web", "image": format!("{REGISTRY}/p/web:1")}]}}}});
    cluster.apply(&replica_set.to_string());
    let pod = eventually(Duration::from_secs(60), "the ReplicaSet's pod", || {
        let mut names = Vec::new();
        admin
            .list_each::<Pod>(Some(ns), &Default::default(), |p| {
                names.push(p.metadata.name)
            })
            .ok()?;
        names.into_iter().next()
    });
    let status = json!({"status": {"phase": "Pending", "containerStatuses": [{"name": "web", "image": format!("{REGISTRY}/p/web:1"), "imageID": "",
        "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff", "message": "pull access denied"}}}]}});
    cluster.kubectl(&[
        "-n",
        ns,
        "patch",
        "pod",
        &pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
    // An Event an earlier process began for the decommissioning to come: the controller finds it (get) and
    // continues its series (patch) instead of creating another.
    let earlier = build_event(
        &reference("v1", "ServiceAccount", &old.metadata),
        EventType::Normal,
        REASON_DECOMMISSIONED,
        "Decommission",
        "Removed image pull secrets that are no longer wanted: imagepullsecret-old-1",
        "an-earlier-process",
        chrono::Utc::now(),
    );
    admin
        .create(Some(ns), &earlier)
        .expect("creating the earlier event");
    annotate(cluster, ns, "app", &[]);
    annotate(cluster, ns, "stale", &[]);
    annotate(cluster, ns, "old", &[]);
    annotate(
        cluster,
        ns,
        "clash",
        &["imagepullsecrets.preferred.jp/secret-name=taken"],
    );
}

fn start(
    cluster: &Cluster,
    name: &str,
    kubeconfig: &std::path::Path,
    ns: &str,
    fake: &GoogleFake,
) -> Controller {
    let _ = cluster;
    Controller::builder(ns)
        .kubeconfig(kubeconfig)
        .google(&fake.endpoint)
        .args(&[
            "--leader-elect",
            "--leader-election-namespace",
            CONTROLLER_NAMESPACE,
            "--leader-election-id",
            name,
        ])
        .args(&[
            "--leader-election-lease-duration",
            "6s",
            "--leader-election-renew-deadline",
            "4s",
            "--leader-election-retry-period",
            "1s",
        ])
        .args(&["--min-refresh-interval", "2s"])
        .start()
}

fn fake(lifetime: &str) -> GoogleFake {
    GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, "*")
        .arg("--token-lifetime")
        .arg(lifetime)
        .start()
}

#[test]
fn the_manifests_rbac_suffices_for_the_whole_scenario() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("rbac-all");
    let name = format!("{ns}-controller");
    let kubeconfig = identity(
        cluster,
        &name,
        &rules("rbac.yaml", "ClusterRole"),
        &rules("leader-election-rbac.yaml", "Role"),
    );
    let fake = fake("20");
    scenario(cluster, &ns);
    let controller = start(cluster, &name, &kubeconfig, &ns, &fake);

    // Provision (create), attach, and a Normal event.
    let first: Secret = eventually(Duration::from_secs(60), "app's secret", || {
        admin.get(Some(&ns), "imagepullsecret-app").ok()
    });
    eventually(Duration::from_secs(30), "app's secret attached", || {
        let sa: ServiceAccount = admin.get(Some(&ns), "app").ok()?;
        sa.image_pull_secrets?
            .iter()
            .any(|s| s.name == "imagepullsecret-app")
            .then_some(())
    });
    // Update of a stale owned secret, deletion of an unwanted one, the foreign secret left alone.
    eventually(
        Duration::from_secs(60),
        "the stale secret refreshed",
        || {
            let s: Secret = admin.get(Some(&ns), "imagepullsecret-stale").ok()?;
            (s.metadata
                .annotations
                .get("imagepullsecrets.preferred.jp/principal")?
                == EMAIL)
                .then_some(())
        },
    );
    eventually(
        Duration::from_secs(60),
        "the unwanted secret deleted",
        || {
            admin
                .get::<Secret>(Some(&ns), "imagepullsecret-old-1")
                .is_err()
                .then_some(())
        },
    );
    // Eviction of the stuck pod; events on pods and ServiceAccounts.
    eventually(Duration::from_secs(60), "events of every kind", || {
        let events = cluster.kubectl(&[
            "-n",
            &ns,
            "get",
            "events",
            "-o",
            "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
        ]);
        [
            "ProvisionedImagePullSecret",
            "DecommissionedImagePullSecret",
            "FailedProvisioningImagePullSecret",
            "EvictedForImagePullSecret",
        ]
        .iter()
        .all(|r| events.contains(r))
        .then_some(())
    });
    // The earlier process's Event was continued, not duplicated.
    eventually(
        Duration::from_secs(30),
        "the earlier event continued",
        || {
            let event: Event = admin.get(Some(&ns), &earlier_name(&admin, &ns)).ok()?;
            (event.other.get("series")?["count"].as_u64()? >= 2).then_some(())
        },
    );
    // Refresh: the 20 s credential is replaced at about three quarters of its lifetime.
    let first_expiry =
        first.metadata.annotations["imagepullsecrets.preferred.jp/expires-at"].clone();
    eventually(Duration::from_secs(60), "app's secret refreshed", || {
        let s: Secret = admin.get(Some(&ns), "imagepullsecret-app").ok()?;
        (s.metadata.annotations["imagepullsecrets.preferred.jp/expires-at"] != first_expiry)
            .then_some(())
    });
    // The lease is held by this controller.
    let lease: Lease = admin.get(Some(CONTROLLER_NAMESPACE), &name).unwrap();
    assert!(
        lease
            .spec
            .holder_identity
            .as_deref()
            .is_some_and(|h| !h.is_empty()),
        "{lease:?}"
    );
    // Clean up when the configuration goes.
    cluster.kubectl(&[
        "-n",
        &ns,
        "annotate",
        "serviceaccount",
        "app",
        "imagepullsecrets.preferred.jp/registry-",
        "imagepullsecrets.preferred.jp/audience-",
        "imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider-",
        "imagepullsecrets.preferred.jp/googlecloud-service-account-email-",
    ]);
    eventually(Duration::from_secs(60), "app's secret removed", || {
        admin
            .get::<Secret>(Some(&ns), "imagepullsecret-app")
            .is_err()
            .then_some(())
    });
    let logs = controller.logs();
    assert!(
        !logs.contains("forbidden"),
        "a call was forbidden with the manifests' RBAC:\n{logs}"
    );
}

/// The name of the Event the scenario created as if by an earlier process.
fn earlier_name(admin: &image_pull_secrets_provisioner::kube::Client, ns: &str) -> String {
    let old: ServiceAccount = admin.get(Some(ns), "old").unwrap();
    image_pull_secrets_provisioner::events::event_name(
        &reference("v1", "ServiceAccount", &old.metadata),
        EventType::Normal,
        REASON_DECOMMISSIONED,
        "Decommission",
        "Removed image pull secrets that are no longer wanted: imagepullsecret-old-1",
    )
}

/// The message the API server gives when `verb` on `resource` is not allowed.
fn forbidden_message(resource: &str, verb: &str) -> String {
    format!("cannot {verb} resource \"{resource}\"")
}

fn resource_of(rule: &Value) -> String {
    rule["resources"][0].as_str().unwrap().to_string()
}

#[test]
fn every_verb_of_every_rule_is_needed() {
    let cluster = cluster();
    let cluster_rules = rules("rbac.yaml", "ClusterRole");
    let lease_rules = rules("leader-election-rbac.yaml", "Role");
    // (which role, rule index, verb)
    let mut variants = Vec::new();
    for (index, rule) in cluster_rules.iter().enumerate() {
        for verb in rule["verbs"].as_array().unwrap() {
            variants.push((false, index, verb.as_str().unwrap().to_string()));
        }
    }
    for (index, rule) in lease_rules.iter().enumerate() {
        for verb in rule["verbs"].as_array().unwrap() {
            variants.push((true, index, verb.as_str().unwrap().to_string()));
        }
    }
    assert!(variants.len() >= 17, "{variants:?}");
    if let Ok(only) = std::env::var("IPSP_RBAC_ONLY") {
        variants.retain(|(_, _, verb)| *verb == only);
    }

    let mut failures = Vec::new();
    // A few at a time: each run is a controller, a Google stand-in and a ReplicaSet.
    for batch in variants.chunks(6) {
        let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|(is_lease, index, verb)| {
                    let (cluster_rules, lease_rules) = (&cluster_rules, &lease_rules);
                    scope.spawn(move || {
                        let (rule, reduced_cluster, reduced_lease) = if *is_lease {
                            (
                                &lease_rules[*index],
                                cluster_rules.clone(),
                                without(lease_rules, *index, verb),
                            )
                        } else {
                            (
                                &cluster_rules[*index],
                                without(cluster_rules, *index, verb),
                                lease_rules.clone(),
                            )
                        };
                        let resource = resource_of(rule);
                        let ns = cluster
                            .namespace(&format!("rbac-no-{}-{verb}", resource.replace('/', "-")));
                        let name = format!("{ns}-controller");
                        let kubeconfig = identity(cluster, &name, &reduced_cluster, &reduced_lease);
                        let fake = fake("3600");
                        // Everything is in place before the controller starts, so each call it makes is
                        // decided by its initial lists, not by the order of the setup.
                        scenario(cluster, &ns);
                        let controller = start(cluster, &name, &kubeconfig, &ns, &fake);
                        let want = forbidden_message(&resource, verb);
                        let reported =
                            poll(Duration::from_secs(90), Duration::from_millis(200), || {
                                controller.logs().contains(&want).then_some(())
                            });
                        if reported.is_some() {
                            println!("without {verb} {resource}: the controller reports {want:?}");
                            return Ok(());
                        }
                        Err(format!(
                            "without {verb} on {resource}, nothing says {want:?}; log:\n{}",
                            controller.logs()
                        ))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        failures.extend(results.into_iter().filter_map(Result::err));
    }
    assert!(
        failures.is_empty(),
        "{} superfluous-looking rules:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
