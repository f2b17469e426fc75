//! The Kubernetes client and watch loop against a real kube-apiserver.

use std::sync::mpsc;
use std::time::Duration;

use crate::support::{cluster, eventually, jwt_claims, PrivateCluster};
use image_pull_secrets_provisioner::kube::types::{ObjectMeta, Secret, ServiceAccount};
use image_pull_secrets_provisioner::kube::watch::WatchEvent;
use image_pull_secrets_provisioner::kube::{Client, ListParams, Reason};
use image_pull_secrets_provisioner::runtime::watcher::{Event, Watcher};
use image_pull_secrets_provisioner::shutdown::Shutdown;

fn secret(name: &str, label: &str) -> Secret {
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: name.to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    secret.metadata.labels.insert("test".into(), label.into());
    secret.data.insert("k".into(), "dg==".into());
    secret
}

/// Runs a watcher over secrets of `namespace` on a thread; events arrive on the returned channel as short
/// strings such as `applied:a`, `deleted:a`, `list-started`, `listed:a`, `list-done`.
fn watch_secrets(
    client: Client,
    namespace: &str,
    configure: impl FnOnce(Watcher) -> Watcher,
) -> (
    mpsc::Receiver<String>,
    Shutdown,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel();
    let shutdown = Shutdown::new();
    // A short server-side timeout, so that a test's shutdown is noticed within seconds: a blocked read
    // only returns when the server ends the watch.
    let watcher = configure(
        Watcher::new(
            client,
            Some(namespace.to_string()),
            ListParams::default(),
            "test",
        )
        .watch_timeout(Duration::from_secs(5)),
    );
    let stop = shutdown.clone();
    let handle = std::thread::spawn(move || {
        watcher.run::<Secret>(&stop, |event| {
            let text = match event {
                Event::ListStarted => "list-started".to_string(),
                Event::Listed(s) => format!("listed:{}", s.metadata.name),
                Event::ListDone => "list-done".to_string(),
                Event::Applied(s) => format!("applied:{}", s.metadata.name),
                Event::Deleted(s) => format!("deleted:{}", s.metadata.name),
            };
            let _ = tx.send(text);
        })
    });
    (rx, shutdown, handle)
}

fn expect(rx: &mpsc::Receiver<String>, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(event) if event == want => return,
            Ok(event) => seen.push(event),
            Err(_) => {}
        }
    }
    panic!("no {want:?} within 30 s; saw {seen:?}");
}

#[test]
fn list_pages_through_every_object() {
    let cluster = cluster();
    let client = cluster.admin();
    let ns = cluster.namespace("paging");
    for i in 0..7 {
        client
            .create(Some(&ns), &secret(&format!("s{i}"), "paging"))
            .unwrap();
    }
    let params = ListParams {
        label_selector: Some("test=paging".into()),
        limit: Some(3),
        ..Default::default()
    };
    let first = client
        .list_page::<Secret>(Some(&ns), &params, None)
        .unwrap();
    assert_eq!(first.items.len(), 3);
    assert!(
        !first.metadata.continue_.is_empty(),
        "a first page of 3 out of 7 has a continue token"
    );

    let mut names = Vec::new();
    let resource_version = client
        .list_each::<Secret>(Some(&ns), &params, |s| names.push(s.metadata.name))
        .unwrap();
    names.sort();
    assert_eq!(names, (0..7).map(|i| format!("s{i}")).collect::<Vec<_>>());
    assert!(!resource_version.is_empty());
}

#[test]
fn a_watch_sees_add_modify_and_delete() {
    let cluster = cluster();
    let client = cluster.admin();
    let ns = cluster.namespace("watch");
    client.create(Some(&ns), &secret("before", "w")).unwrap();
    let (rx, shutdown, handle) = watch_secrets(client.clone(), &ns, |w| w);
    expect(&rx, "listed:before");
    expect(&rx, "list-done");

    client.create(Some(&ns), &secret("a", "w")).unwrap();
    expect(&rx, "applied:a");
    let mut current: Secret = client.get(Some(&ns), "a").unwrap();
    current
        .metadata
        .labels
        .insert("changed".into(), "yes".into());
    client.replace(Some(&ns), "a", &current).unwrap();
    expect(&rx, "applied:a");
    client.delete::<Secret>(Some(&ns), "a", None).unwrap();
    expect(&rx, "deleted:a");
    shutdown.trigger();
    client.create(Some(&ns), &secret("wake", "w")).unwrap();
    handle.join().unwrap();
}

#[test]
fn watches_carry_bookmarks_that_only_advance_the_resource_version() {
    let cluster = cluster();
    let client = cluster.admin();
    let ns = cluster.namespace("bookmark");
    let list = client
        .list_page::<Secret>(Some(&ns), &ListParams::default(), None)
        .unwrap();
    // The API server sends a bookmark about once a minute on a watch that asked for them.
    let mut stream = client
        .watch::<Secret>(
            Some(&ns),
            &ListParams::default(),
            &list.metadata.resource_version,
            Duration::from_secs(75),
        )
        .unwrap();
    let mut bookmark = None;
    while let Some(event) = stream.next_event().unwrap() {
        if let WatchEvent::Bookmark { resource_version } = event {
            bookmark = Some(resource_version);
            break;
        }
    }
    let bookmark = bookmark.expect("a bookmark before the watch ended");
    let number = |rv: &str| rv.parse::<u64>().unwrap();
    assert!(number(&bookmark) >= number(&list.metadata.resource_version));
}

#[test]
fn a_watch_ended_by_the_server_resumes_without_relisting() {
    let cluster = cluster();
    let client = cluster.admin();
    let ns = cluster.namespace("resume");
    let (rx, shutdown, handle) = watch_secrets(client.clone(), &ns, |w| {
        w.watch_timeout(Duration::from_secs(1))
    });
    expect(&rx, "list-done");
    // Several server-side timeouts pass; the watch is re-opened from the last resourceVersion each time.
    std::thread::sleep(Duration::from_secs(4));
    client.create(Some(&ns), &secret("late", "r")).unwrap();
    expect(&rx, "applied:late");
    shutdown.trigger();
    handle.join().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        !rest.contains(&"list-started".to_string()),
        "no relist after a clean end of stream: {rest:?}"
    );
}

#[test]
fn an_expired_resource_version_leads_to_a_relist() {
    // etcd compaction every few seconds makes an old resourceVersion unusable quickly.
    let private = PrivateCluster::start(
        "gone",
        &["--etcd-compaction-interval=2s", "--watch-cache=false"],
    );
    let client = private.cluster.admin();
    client.create(Some("default"), &secret("old", "g")).unwrap();
    let old = client
        .list_page::<Secret>(Some("default"), &ListParams::default(), None)
        .unwrap()
        .metadata
        .resource_version;
    for i in 0..5 {
        client
            .create(Some("default"), &secret(&format!("newer{i}"), "g"))
            .unwrap();
    }
    eventually(
        Duration::from_secs(30),
        "the old resourceVersion to be compacted",
        || match client.watch::<Secret>(
            Some("default"),
            &ListParams::default(),
            &old,
            Duration::from_secs(1),
        ) {
            Err(e) if e.is(Reason::Gone) => Some(()),
            Ok(mut stream) => match stream.next_event() {
                Ok(Some(WatchEvent::Error(e))) if e.is(Reason::Gone) => Some(()),
                _ => None,
            },
            Err(_) => None,
        },
    );
    let (rx, shutdown, handle) = watch_secrets(client.clone(), "default", |w| w.resume_from(&old));
    expect(&rx, "list-started");
    expect(&rx, "list-done");
    client
        .create(Some("default"), &secret("after", "g"))
        .unwrap();
    expect(&rx, "applied:after");
    shutdown.trigger();
    handle.join().unwrap();
}

#[test]
fn no_change_is_missed_across_an_apiserver_restart() {
    let private = PrivateCluster::start("restart", &[]);
    let client = private.cluster.admin();
    client.create(Some("default"), &secret("a", "x")).unwrap();
    client.create(Some("default"), &secret("c", "x")).unwrap();
    let (rx, shutdown, handle) = watch_secrets(client.clone(), "default", |w| w);
    expect(&rx, "list-done");

    private.restart_apiserver();
    // Changes made right after the restart, possibly before the watcher has reconnected.
    client.create(Some("default"), &secret("b", "x")).unwrap();
    let mut a: Secret = client.get(Some("default"), "a").unwrap();
    a.metadata
        .labels
        .insert("after-restart".into(), "yes".into());
    client.replace(Some("default"), "a", &a).unwrap();
    client.delete::<Secret>(Some("default"), "c", None).unwrap();

    let mut want = vec![
        "applied:b".to_string(),
        "applied:a".to_string(),
        "deleted:c".to_string(),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut relisted = Vec::new();
    while !want.is_empty() && std::time::Instant::now() < deadline {
        if let Ok(event) = rx.recv_timeout(Duration::from_millis(200)) {
            want.retain(|w| *w != event);
            relisted.push(event);
        }
    }
    assert!(want.is_empty(), "missed {want:?}; saw {relisted:?}");
    shutdown.trigger();
    handle.join().unwrap();
}

#[test]
fn token_requests_carry_the_audience_subject_and_a_short_expiry() {
    let cluster = cluster();
    let client = cluster.admin();
    let ns = cluster.namespace("token");
    let mut sa = ServiceAccount::default();
    sa.metadata.name = "robot".into();
    client.create(Some(&ns), &sa).unwrap();
    let issued = client
        .create_token(
            &ns,
            "robot",
            &["sts.example.test"],
            Duration::from_secs(600),
        )
        .unwrap();
    let claims = jwt_claims(issued.token.expose());
    assert_eq!(claims["aud"], serde_json::json!(["sts.example.test"]));
    assert_eq!(claims["sub"], format!("system:serviceaccount:{ns}:robot"));
    assert_eq!(claims["iss"], cluster.issuer.as_str());
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 600);
    assert!(
        !format!("{issued:?}").contains(issued.token.expose()),
        "Debug output hides the token"
    );
}

#[test]
fn a_forbidden_call_keeps_the_servers_message() {
    let cluster = cluster();
    let client = cluster.admin();
    let ns = cluster.namespace("forbidden");
    let mut sa = ServiceAccount::default();
    sa.metadata.name = "nobody".into();
    client.create(Some(&ns), &sa).unwrap();
    let token = client
        .create_token(
            &ns,
            "nobody",
            &[cluster.server.as_str()],
            Duration::from_secs(600),
        )
        .unwrap();
    let unprivileged = cluster.client_with_token(token.token.expose());
    let error = unprivileged
        .get::<Secret>(Some(&ns), "anything")
        .unwrap_err();
    assert!(error.is(Reason::Forbidden), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("secrets \"anything\" is forbidden: User \"system:serviceaccount:{ns}:nobody\" cannot get resource \"secrets\" in API group \"\" in the namespace \"{ns}\"")
    );
}

#[test]
fn a_missing_object_is_not_found_and_a_stale_update_conflicts() {
    let cluster = cluster();
    let client = cluster.admin();
    let ns = cluster.namespace("errors");
    let error = client.get::<Secret>(Some(&ns), "absent").unwrap_err();
    assert!(error.is(Reason::NotFound), "{error:?}");
    let created = client.create(Some(&ns), &secret("s", "e")).unwrap();
    let error = client.create(Some(&ns), &secret("s", "e")).unwrap_err();
    assert!(error.is(Reason::AlreadyExists), "{error:?}");
    let mut fresh = created.clone();
    fresh.metadata.labels.insert("v".into(), "2".into());
    client.replace(Some(&ns), "s", &fresh).unwrap();
    let mut stale = created;
    stale.metadata.labels.insert("v".into(), "stale".into());
    let error = client.replace(Some(&ns), "s", &stale).unwrap_err();
    assert!(error.is(Reason::Conflict), "{error:?}");
    let error = client
        .delete::<Secret>(Some(&ns), "s", Some("not-the-uid"))
        .unwrap_err();
    assert!(error.is(Reason::Conflict), "{error:?}");
}
