//! Networks that fail without telling anyone (SPEC B12, issue 24): the controller reaches the real API server
//! through the project's fault proxy, which silences every open connection (no FIN, no RST, the peer's kernel
//! still acknowledging) while new connections still pass — what a load balancer or NAT that forgot its flows
//! does. The watches must notice their silence by their idle deadline (75 s: the API server's bookmarks come
//! every 60 s) and resume over new connections; requests must not be retried on the pooled dead ones.

use std::time::{Duration, Instant};

use image_pull_secrets_provisioner::kube::types::ServiceAccount;
use image_pull_secrets_provisioner::kube::Patch;
use serde_json::json;

use crate::support::controller::{controller_kubeconfig, Controller};
use crate::support::fault_proxy::FaultProxy;
use crate::support::google::{create_google_sa, google_fake, member, AUDIENCE};
use crate::support::objects::{get_sa, pull_secret_names, wait_attached, PREFIX, SECRET};
use crate::support::{cluster, measure, poll, PROMPT};

/// What issue 24 allows from the freeze to a new ServiceAccount's secret: the idle deadline plus a margin.
const SERVED_AFTER_FREEZE: Duration = Duration::from_secs(90);

#[test]
fn service_accounts_are_served_after_every_connection_to_the_api_server_went_silent() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("faults-freeze");
    let fake = google_fake(AUDIENCE, &[member(&ns, "app"), member(&ns, "later")]);
    let proxy = FaultProxy::for_server(&cluster.server);
    let kubeconfig = proxy.kubeconfig(controller_kubeconfig(), &cluster.server);
    let controller = Controller::builder(&ns)
        .kubeconfig(&kubeconfig)
        .google(&fake.endpoint)
        .start();
    create_google_sa(&admin, &ns, "app");
    wait_attached(&admin, &ns, "app", &[SECRET], &controller);
    controller.wait_idle();

    proxy.make("freeze");
    let frozen_at = Instant::now();
    let frozen = proxy.stats()["frozen"].as_u64().unwrap_or(0);
    assert!(
        frozen >= 3,
        "the three watches at least were frozen: {}",
        proxy.stats()
    );
    create_google_sa(&admin, &ns, "later");
    let served = poll(
        SERVED_AFTER_FREEZE + Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            (pull_secret_names(&get_sa(&admin, &ns, "later")) == ["imagepullsecret-later"])
                .then(|| frozen_at.elapsed())
        },
    )
    .unwrap_or_else(|| panic!("not served after the freeze:\n{}", controller.logs()));
    println!("a ServiceAccount created after the freeze was served after {served:?}");
    assert!(
        served <= SERVED_AFTER_FREEZE,
        "served only after {served:?}:\n{}",
        controller.logs()
    );
    let logs = controller.logs();
    assert!(
        logs.contains("the connection went silent"),
        "the silent watches ended by their idle deadline:\n{logs}"
    );
    let (_, metrics) = controller.http_get("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("watch_restarts_total") && l.contains(r#"reason="silent""#)),
        "watch restarts for silence are counted:\n{metrics}"
    );

    // The connections that replaced the silent ones carry the next change as promptly as ever.
    let patch = json!({"metadata": {"annotations": {format!("{PREFIX}secret-name"): "renamed"}}});
    admin
        .patch::<ServiceAccount>(Some(&ns), "app", &Patch::Merge(patch))
        .expect("annotating");
    let edit = measure("an edit after the freeze", &controller, || {
        pull_secret_names(&get_sa(&admin, &ns, "app")) == ["renamed"]
    });
    assert!(
        edit <= PROMPT,
        "the edit took {edit:?}:\n{}",
        controller.logs()
    );
    // Nothing new was sent over the frozen connections: they are still there, still silent.
    assert!(proxy.stats()["frozen"].as_u64().unwrap_or(0) >= frozen);
}
