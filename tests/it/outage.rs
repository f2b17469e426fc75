//! Outages and throttling, against the real apiserver and the Google stand-in: a provider outage backs off, warns
//! once and recovers; a minute of provider outage over 1,000 ServiceAccounts (event series, the provider request
//! pace counted at the stand-in, recovery); and the apiserver's own `Retry-After`.
//!
//! Each test has its own namespace, controller and stand-ins. Where a time is the requirement itself (a retry no
//! sooner than `Retry-After`), it is measured, printed and asserted.

use std::path::Path;
use std::time::{Duration, Instant};

use image_pull_secrets_provisioner::kube::types::{Event, ObjectMeta, Secret};
use image_pull_secrets_provisioner::kube::{Client, ListParams};
use serde_json::json;

use crate::support::controller::Controller;
use crate::support::google::{
    create_google_sa, google_config, google_fake, member, GoogleFake, AUDIENCE, EMAIL, PROVIDER,
};
use crate::support::moto::StandIn;
use crate::support::objects::{
    annotations, count_events, create_sa, events_about, events_in, get_secret, series_count,
    wait_attached, wait_event, FAILED, PROVISIONED,
};
use crate::support::{cluster, eventually, project_root};

/// Longer than elsewhere: a thousand ServiceAccounts, and event series that take their time.
const PATIENCE: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------------------
// Provider outage (SPEC B2, issue 5)

/// The delays of "retrying in N s" lines the worker logged for ServiceAccount `name`.
fn retry_delays(logs: &str, name: &str) -> Vec<f64> {
    logs.lines()
        .filter(|l| l.contains(&format!("serviceaccount={name}")))
        .filter_map(|l| l.split("retrying in ").nth(1))
        .filter_map(|rest| rest.split('s').next())
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn a_provider_outage_backs_off_warns_once_and_recovers() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("outage");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "app"))
        .start();
    fake.control(json!({"failure_rate": 1.0}));
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    let started = Instant::now();
    create_google_sa(&admin, &ns, "app");
    let note = wait_event(
        &admin,
        &ns,
        "app",
        "Warning",
        FAILED,
        "obtaining registry credentials",
        &controller,
    );
    println!("warning: {note}");
    assert!(note.contains(EMAIL) && note.contains("503"), "{note}");

    // The scenario's own time: the outage goes on for 15 s, so that the backoff shows in the retry delays.
    std::thread::sleep(Duration::from_secs(15).saturating_sub(started.elapsed()));
    let logs = controller.logs();
    let delays = retry_delays(&logs, "app");
    let sts = fake.count("sts_calls");
    println!(
        "after {:?}: {sts} STS calls, retry delays {delays:?}",
        started.elapsed()
    );
    assert!(delays.len() >= 2, "{logs}");
    assert!(
        delays.windows(2).all(|w| w[1] > w[0]),
        "backoff grows: {delays:?}"
    );
    // The queue's backoff (1, 2, 4, 8 s, +20% jitter) allows at most 5 reconciles in 15 s, each trying the
    // provider 3 times within itself: without backoff there would be hundreds.
    assert!(
        delays.len() <= 5,
        "{} retries in 15 s: {delays:?}",
        delays.len()
    );
    assert!(sts <= 15, "{sts} STS calls in 15 s");
    assert_eq!(fake.count("iam_calls"), 0);
    let events = events_about(&admin, &ns, "app");
    assert_eq!(
        count_events(&events, "Warning", FAILED),
        1,
        "repeated warnings are not repeated: {events:#?}"
    );
    assert!(get_secret(&admin, &ns, "imagepullsecret-app").is_none());

    fake.control(json!({"failure_rate": 0.0}));
    let recovered = Instant::now();
    wait_attached(&admin, &ns, "app", &["imagepullsecret-app"], &controller);
    println!(
        "provisioned {:?} after the provider recovered",
        recovered.elapsed()
    );
    wait_event(
        &admin,
        &ns,
        "app",
        "Normal",
        PROVISIONED,
        "imagepullsecret-app",
        &controller,
    );
}

// ---------------------------------------------------------------------------------------------------------
// Event series over an outage

/// Creates `names` in parallel (8 connections), as a burst of new ServiceAccounts arrives in a real cluster.
fn create_many(admin: &Client, ns: &str, names: &[String], emails: &str) {
    std::thread::scope(|scope| {
        for chunk in names.chunks(names.len().div_ceil(8)) {
            scope.spawn(move || {
                for name in chunk {
                    create_sa(
                        admin,
                        ns,
                        name,
                        annotations(&google_config(AUDIENCE, emails)),
                        &[],
                    );
                }
            });
        }
    });
}

/// Arrival times (seconds since the epoch) of the Google requests in the fake's log (STS and IAM Credentials).
fn provider_request_times(fake: &GoogleFake) -> Vec<f64> {
    let mut times: Vec<f64> = fake
        .log()
        .lines()
        .filter(|l| l.contains(" POST /v1/"))
        .filter_map(|l| {
            l.strip_prefix("google_fake: ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// The largest number of `times` (sorted) that fall in any window of `seconds`.
fn busiest(times: &[f64], seconds: f64) -> usize {
    let mut first = 0;
    let mut most = 0;
    for (last, t) in times.iter().enumerate() {
        while t - times[first] > seconds {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

fn warnings_by_service_account(
    events: &[Event],
) -> std::collections::BTreeMap<String, Vec<&Event>> {
    let mut per_sa = std::collections::BTreeMap::<String, Vec<&Event>>::new();
    for event in events.iter().filter(|e| e.reason == FAILED) {
        per_sa
            .entry(event.regarding.name.clone())
            .or_default()
            .push(event);
    }
    per_sa
}

#[test]
fn a_minute_of_provider_outage_over_1000_service_accounts_is_paced_counted_and_recovered() {
    const COUNT: usize = 1000;
    const OUTAGE: Duration = Duration::from_secs(60);
    // Low enough that the bucket, not the 8 workers, sets the pace (they could send about twice this), so
    // the timestamps prove the limit; high enough that the backlog drains in under two minutes.
    const RATE: f64 = 20.0;
    const BURST: f64 = 20.0;
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("outage");
    let fake = google_fake(AUDIENCE, &["*"]);
    fake.control(json!({"failure_rate": 1.0}));
    let controller = Controller::builder(&ns)
        .google(&fake.endpoint)
        .args(&["--provider-rate", "20", "--provider-burst", "20"])
        .log_level("info")
        .start();
    // At 20 requests a second (3 per failed reconcile) a minute reaches about 400 ServiceAccounts once, so
    // repeats would never happen to anyone if all arrived at once: a first wave of 60 fails over and over
    // (a pass takes 9 s), the other 940 arrive half-way through the outage.
    let names: Vec<String> = (0..COUNT).map(|i| format!("sa-{i}")).collect();
    let (first_wave, second_wave) = names.split_at(60);
    let outage_began = Instant::now();
    create_many(&admin, &ns, first_wave, EMAIL);
    // The scenario's own time: the second wave arrives half-way through the outage.
    std::thread::sleep((OUTAGE / 2).saturating_sub(outage_began.elapsed()));
    let second_began = Instant::now();
    create_many(&admin, &ns, second_wave, EMAIL);
    println!(
        "{} ServiceAccounts created in {:.1} s",
        second_wave.len(),
        second_began.elapsed().as_secs_f64()
    );
    // The scenario's own time: the outage lasts its full minute.
    std::thread::sleep(OUTAGE.saturating_sub(outage_began.elapsed()));

    // The end of the outage: each failing ServiceAccount has one Warning Event, repeats are its series.
    let events = events_in(&admin, &ns);
    let per_sa = warnings_by_service_account(&events);
    let occurrences: u64 = per_sa.values().flatten().map(|e| series_count(e)).sum();
    let stats = fake.stats();
    println!(
        "after the {} s outage: {} Event objects, {} Warnings for {} ServiceAccounts, {} with a series, {occurrences} \
         occurrences; {} provider requests, all failed",
        OUTAGE.as_secs(),
        events.len(),
        per_sa.values().map(Vec::len).sum::<usize>(),
        per_sa.len(),
        per_sa.values().flatten().filter(|e| series_count(e) >= 2).count(),
        stats["sts_calls"],
    );
    fake.control(json!({"failure_rate": 0.0}));
    let recovery_began = Instant::now();
    assert!(
        events.len() <= COUNT,
        "at most {COUNT} Event objects: {}",
        events.len()
    );
    assert_eq!(
        per_sa.values().map(Vec::len).max(),
        Some(1),
        "one Warning Event per failing ServiceAccount"
    );
    // Each failed reconcile tried the STS three times (two in-exchange retries) and told its ServiceAccount.
    let failed_reconciles = stats["injected_failures"].as_u64().unwrap_or(0) / 3;
    assert!(
        per_sa.len() >= 100 && per_sa.len() as u64 >= failed_reconciles / 2,
        "the failing ServiceAccounts were told: {} of about {failed_reconciles} failed reconciles",
        per_sa.len()
    );
    let repeated_in_first_wave = |per_sa: &std::collections::BTreeMap<String, Vec<&Event>>,
                                  at_least| {
        first_wave
            .iter()
            .filter(|name| {
                per_sa
                    .get(*name)
                    .is_some_and(|e| series_count(e[0]) >= at_least)
            })
            .count()
    };
    let repeated = repeated_in_first_wave(&per_sa, 2);
    assert!(
        repeated >= 54,
        "repeats are a series on the one Event: {repeated} of the first wave's 60"
    );
    let sample = per_sa.values().flatten().next().expect("a Warning");
    assert!(
        sample.note.contains(EMAIL) && sample.note.contains("503"),
        "{}",
        sample.note
    );
    // `kubectl describe` (core/v1 events) shows them.
    let told = per_sa.keys().next().expect("a told ServiceAccount");
    let described = cluster.kubectl(&["-n", &ns, "describe", "serviceaccount", told]);
    assert!(described.contains(FAILED), "{described}");

    // Recovery: every secret, within a bound (2,000 requests at 20 a second, plus the backoff in force).
    eventually(
        Duration::from_secs(240),
        "every secret after recovery",
        || {
            let mut secrets = 0;
            admin
                .list_each::<Secret>(Some(&ns), &ListParams::default(), |s| {
                    if s.metadata.name.starts_with("imagepullsecret-sa-") {
                        secrets += 1
                    }
                })
                .ok()?;
            (secrets == COUNT).then_some(())
        },
    );
    let recovered_in = recovery_began.elapsed();

    // The pace, from the fake's own arrival times: no stretch of requests beats the bucket (two requests of
    // slack for timing), and the busiest ten seconds came near the rate (the limit was what held them back).
    let times = provider_request_times(&fake);
    for i in 0..times.len() {
        for j in i + 1..times.len() {
            let allowed = BURST + RATE * (times[j] - times[i]) + 2.0;
            assert!(
                (j - i + 1) as f64 <= allowed,
                "{} provider requests in {:.2} s, above --provider-rate {RATE} --provider-burst {BURST}",
                j - i + 1,
                times[j] - times[i]
            );
        }
    }
    let per_second = busiest(&times, 1.0);
    let per_ten_seconds = busiest(&times, 10.0);
    let stats = fake.stats();
    // The owed series updates are due a minute after the last written one: the time must pass.
    std::thread::sleep(Duration::from_secs(60).saturating_sub(recovered_in));
    let events = events_in(&admin, &ns);
    let per_sa = warnings_by_service_account(&events);
    println!(
        "recovered in {:.0} s; {} provider requests ({} STS, {} IAM, {} injected failures), at most {per_second} in \
         a second and {per_ten_seconds} in ten; {} Event objects now, {} Warnings",
        recovered_in.as_secs_f64(),
        times.len(),
        stats["sts_calls"],
        stats["iam_calls"],
        stats["injected_failures"],
        events.len(),
        per_sa.values().map(Vec::len).sum::<usize>(),
    );
    assert!(
        per_ten_seconds as f64 >= RATE * 10.0 / 2.0,
        "the backlog ran at the limit: {per_ten_seconds} requests in the busiest ten seconds"
    );
    assert_eq!(
        times.len() as u64,
        stats["sts_calls"].as_u64().unwrap() + stats["iam_calls"].as_u64().unwrap(),
        "every request is in the log"
    );
    assert!(per_sa.values().all(|events| events.len() == 1));
    assert!(
        events.len() <= 2 * COUNT,
        "at most a Warning and a Normal Event per ServiceAccount: {}",
        events.len()
    );
    // Repeats after the first are written at most a minute apart, and those still owed when the failures
    // stopped are written later: the series ends with its full count.
    let counted_on = repeated_in_first_wave(&per_sa, 3);
    println!("{counted_on} of the first wave's series counted 3 or more");
    assert!(
        counted_on >= 30,
        "series keep counting after the first repeat: {counted_on} of the first wave's 60"
    );
    assert!(controller.is_running());
}

// ---------------------------------------------------------------------------------------------------------
// Kubernetes Retry-After

/// A self-signed certificate for 127.0.0.1 and its key, in `dir`.
fn webhook_certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("webhook.crt"), dir.join("webhook.key"));
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl could not make a certificate");
    (cert, key)
}

/// Times (unix seconds) at which the webhook saw secret `ns/name` created, and whether it was allowed.
fn admissions(webhook: &StandIn, ns: &str, name: &str) -> Vec<(f64, bool)> {
    webhook
        .log()
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            (parts.next()? == "admission").then_some(())?;
            let at: f64 = parts.next()?.parse().ok()?;
            let _operation = parts.next()?;
            let object = parts.next()?;
            let verdict = parts.next()?;
            (object == format!("{ns}/{name}")).then_some((at, verdict == "allowed"))
        })
        .collect()
}

#[test]
fn a_429_with_retry_after_from_the_apiserver_delays_the_next_attempt() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("retry-after");
    let dir = std::env::temp_dir().join(format!("ipsp-webhook-{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = webhook_certificate(&dir);
    let webhook = StandIn::start(
        "throttling-webhook",
        &project_root().join("scripts/testenv/throttling_webhook.py"),
        &[
            "--cert".into(),
            cert.to_string_lossy().into_owned(),
            "--key".into(),
            key.to_string_lossy().into_owned(),
            "--deny".into(),
            "3".into(),
            "--retry-after".into(),
            "3".into(),
        ],
    );
    let ca_bundle = crate::support::base64_encode(&std::fs::read(&cert).unwrap());
    // Secret creates in this namespace only; a webhook that is down fails open, so no other test is hurt.
    let configuration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": format!("throttle-{ns}")},
        "webhooks": [{
            "name": "throttle.ipsp.test",
            "clientConfig": {"url": format!("https://127.0.0.1:{}/", webhook.port), "caBundle": ca_bundle},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["secrets"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }],
    });
    cluster.apply(&configuration.to_string());
    struct Remove<'a>(&'a crate::support::Cluster, String);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new(&self.0.kubectl)
                .arg("--kubeconfig")
                .arg(&self.0.admin_kubeconfig)
                .args([
                    "delete",
                    "validatingwebhookconfiguration",
                    &self.1,
                    "--ignore-not-found",
                ])
                .output();
        }
    }
    let _remove = Remove(cluster, format!("throttle-{ns}"));
    // The webhook is in force once the apiserver has picked up the configuration: a probe secret is denied
    // (which uses up the first denial).
    let probe = Secret {
        metadata: ObjectMeta {
            name: "probe".into(),
            namespace: ns.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    eventually(PATIENCE, "the webhook to be in force", || {
        match admin.create(Some(&ns), &probe) {
            Err(e) if e.to_string().contains("throttled by the test webhook") => Some(()),
            Err(e) => panic!("creating the probe secret: {e}"),
            Ok(_) => {
                cluster.kubectl(&["-n", &ns, "delete", "secret", "probe"]);
                None
            }
        }
    });
    let fake = google_fake(AUDIENCE, &["*"]);

    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    create_google_sa(&admin, &ns, "app");
    eventually(PATIENCE, "the secret, after the throttling", || {
        admin.get::<Secret>(Some(&ns), "imagepullsecret-app").ok()
    });
    let seen = admissions(&webhook, &ns, "imagepullsecret-app");
    println!("admissions: {seen:?}");
    assert_eq!(
        seen.iter().map(|(_, allowed)| *allowed).collect::<Vec<_>>(),
        vec![false, false, true],
        "two creates throttled, the third allowed; webhook log:\n{}",
        webhook.log()
    );
    let gaps: Vec<f64> = seen.windows(2).map(|w| w[1].0 - w[0].0).collect();
    println!("gaps between attempts: {gaps:?}");
    assert!(
        gaps.iter().all(|gap| *gap >= 3.0),
        "the next attempt came sooner than Retry-After: 3: {gaps:?}"
    );
    let logs = controller.logs();
    assert!(
        logs.contains("admission webhook \"throttle.ipsp.test\" denied the request: throttled by the test webhook"),
        "{logs}"
    );
}
