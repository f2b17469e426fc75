//! Wiring: flags → clients → watch threads → work queue → workers, until shutdown.
//!
//! What must stay true: memory grows only with configured ServiceAccounts, their secrets and their pending
//! pods (the caches in `cache` keep nothing else); nothing is reconciled before every cache holds the whole
//! initial state; only the leader writes; idle threads block instead of polling; shutdown stops taking work,
//! lets running reconciles finish (bounded), and only then releases the lease.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::annotations as keys;
use crate::cache::service_accounts::Action as SaAction;
use crate::cache::Caches;
use crate::cloud::aws::AwsClient;
use crate::cloud::azure::AzureClient;
use crate::cloud::google::GoogleClient;
use crate::cloud::http::{ProviderHttp, RetryPolicy};
use crate::cloud::{Clouds, CredentialSource};
use crate::config::Config;
use crate::events::EventRecorder;
use crate::http::{self, Endpoints, Health};
use crate::key::ObjectKey;
use crate::kube::types::{Pod, Secret, ServiceAccount};
use crate::kube::{Client, Connection, ListParams};
use crate::metrics::metrics;
use crate::reconcile::{evictor, service_account, Context, Options, ReconcileError};
use crate::runtime::gate::Gate;
use crate::runtime::leader::{default_identity, LeaderConfig, LeaderElector};
use crate::runtime::queue::{BackoffPolicy, Queue};
use crate::runtime::store::Relist;
use crate::runtime::watcher::{Event, Watcher};
use crate::shutdown::Shutdown;
use crate::sync::lock;

/// A unit of work: a ServiceAccount to reconcile, or its pending pods to look at. An [`ObjectKey`] shares its
/// names, so the queue's copies of a waiting key (by time and by key) cost no allocation of their own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum WorkKey {
    ServiceAccount(ObjectKey),
    Pods(ObjectKey),
}

/// How long running reconciles may take to finish once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long stopping waits for the events still queued to be written.
const EVENT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// A worker that has not come back to the queue for this long is reported stuck by `/healthz`.
const WORKER_MAX_SILENCE: Duration = Duration::from_secs(300);

/// Connects to the API server as configured: `--kubeconfig`, else `KUBECONFIG`, else in-cluster, else
/// `~/.kube/config`. Also
/// returns the connection's namespace: the pod's own in-cluster, the context's with a kubeconfig.
pub(crate) fn connect(config: &Config) -> Result<(Client, Option<String>), String> {
    let connection = match (&config.kubeconfig, std::env::var_os("KUBECONFIG")) {
        (Some(path), _) => Connection::from_kubeconfig(std::slice::from_ref(path))?,
        (None, Some(paths)) if !paths.is_empty() => {
            let paths: Vec<_> = std::env::split_paths(&paths)
                .filter(|p| !p.as_os_str().is_empty())
                .collect();
            Connection::from_kubeconfig_list(&paths)?
        }
        _ => Connection::in_cluster_or_home()?,
    };
    let namespace = connection.namespace.clone();
    Ok((Client::new(connection, Duration::from_secs(30))?, namespace))
}

/// Runs the controller until `shutdown` is triggered.
pub fn run(config: Config, shutdown: Shutdown) -> Result<(), String> {
    let (client, own_namespace) = connect(&config)?;
    let identity = default_identity();
    log::info!("connecting to {} as {identity}", client.server());

    let health = Health::new();
    // A worker beats before each provider request too: with every call of a 20-principal reconcile timing
    // out (30 s × 3 attempts each), it would otherwise be silent far beyond WORKER_MAX_SILENCE.
    let beating = health.clone();
    let http = ProviderHttp::new(
        config.provider_ca_bundle.as_deref(),
        config.provider_timeout,
        RetryPolicy::default(),
    )?
    .with_rate_limit(config.provider_rate)
    .with_progress(move || beating.beat_current_thread());
    let clouds: Arc<dyn CredentialSource> = Arc::new(Clouds {
        aws: AwsClient::new(config.aws.clone(), http.for_provider("aws")),
        google: GoogleClient::new(config.google.clone(), http.for_provider("google")),
        azure: AzureClient::new(config.azure.clone(), http.for_provider("azure")),
    });

    let servers = start_http(&config, &health, &shutdown)?;

    // Leadership: checked before taking work and before every write. It turns false on time by itself when
    // renewals stop succeeding, even while the elector thread is stuck in a request.
    let mut is_leader: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(|| true);
    let leading = Arc::new(Gate::new());
    let leader_shutdown = Shutdown::new();
    let leader_thread = if config.leader_elect {
        let namespace = config
            .leader_election_namespace
            .clone()
            .or(own_namespace)
            .ok_or("--leader-election-namespace is required: neither the pod's namespace nor the kubeconfig context's is known")?;
        let elector = LeaderElector::new(
            client.clone(),
            LeaderConfig {
                namespace,
                name: config.leader_election_id.clone(),
                identity: identity.clone(),
                lease_duration: config.lease_duration,
                renew_deadline: config.renew_deadline,
                retry_period: config.retry_period,
                release_on_cancel: true,
            },
        )?;
        let leadership = elector.leadership();
        is_leader = Arc::new(move || leadership.is_leader());
        let gate = leading.clone();
        Some(elector.spawn(leader_shutdown.clone(), move |now_leading| {
            log::info!(
                "{}",
                if now_leading {
                    "became the leader"
                } else {
                    "stopped being the leader"
                }
            );
            metrics().set_leader(now_leading);
            gate.set_open(now_leading);
        })?)
    } else {
        leading.set_open(true);
        metrics().set_leader(true);
        None
    };

    let caches = Arc::new(Caches::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        clouds,
        events: EventRecorder::new(
            client.clone(),
            &identity,
            Duration::from_secs(300),
            is_leader.clone(),
        ),
        options: Options {
            token_expiration: config.token_expiration,
            min_requeue: config.min_refresh_interval,
            pod_eviction: config.pod_eviction,
            max_principals: config.max_principals_per_service_account,
            azure_registry_suffixes: config.azure_registry_suffixes.clone(),
            ..Options::default()
        },
        may_act: is_leader.clone(),
        caches: caches.clone(),
        expired: Mutex::new(HashMap::new()),
        foreign: Mutex::new(HashSet::new()),
    });
    let queue = Arc::new(
        Queue::new(BackoffPolicy::default())
            .with_depth_observer(|depth| metrics().set_queue_depth(depth)),
    );
    let watches = if config.pod_eviction { 3 } else { 2 };
    let lists_done = Arc::new(ListsDone::new(watches, health.clone()));
    let watch = WatchContext {
        client: client.clone(),
        namespace: config.namespace.clone(),
        queue: queue.clone(),
        lists_done: lists_done.clone(),
        ctx: ctx.clone(),
        shutdown: shutdown.clone(),
    };
    start_service_account_watch(&watch)?;
    start_secret_watch(&watch)?;
    if config.pod_eviction {
        start_pod_watch(&watch)?;
    }

    // Nothing is reconciled before every cache holds the whole initial state: a secret not yet listed would
    // look missing.
    while !lists_done.synced.wait_open(Duration::from_secs(1)) {
        if shutdown.is_triggered() {
            break;
        }
    }

    let mut workers = Vec::new();
    for index in 0..config.workers {
        let name = format!("worker-{index}");
        health.register(&name, WORKER_MAX_SILENCE);
        let worker = Worker {
            name: name.clone(),
            ctx: ctx.clone(),
            queue: queue.clone(),
            is_leader: is_leader.clone(),
            leading: leading.clone(),
            health: health.clone(),
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                worker.run();
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("cannot start a worker thread: {e}"))?;
        workers.push(done_rx);
    }

    shutdown.wait();

    log::info!(
        "stopping: no new work is taken; waiting up to {DRAIN_TIMEOUT:?} for running reconciles"
    );
    queue.shut_down();
    leading.close_for_good();
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    for done in workers {
        let left = deadline.saturating_duration_since(Instant::now());
        if done.recv_timeout(left).is_err() {
            log::warn!("a reconcile did not finish within {DRAIN_TIMEOUT:?}; exiting anyway");
            break;
        }
    }
    // Still holding the lease: what the last reconciles published is written before it is released.
    ctx.events.shut_down(EVENT_DRAIN_TIMEOUT);
    leader_shutdown.trigger();
    if let Some(thread) = leader_thread {
        let _ = thread.join();
    }
    for server in servers {
        server.join();
    }
    // The watch threads are blocked reading streams the server ends only at its timeout; they hold nothing
    // that needs saving, so the process exits without waiting for them.
    log::info!("stopped");
    Ok(())
}

fn start_http(
    config: &Config,
    health: &Arc<Health>,
    shutdown: &Shutdown,
) -> Result<Vec<http::Server>, String> {
    let mut servers = Vec::new();
    if config.metrics_bind_address == config.health_probe_bind_address {
        servers.extend(http::serve(
            &config.metrics_bind_address,
            Endpoints::All,
            health.clone(),
            shutdown.clone(),
        )?);
    } else {
        servers.extend(http::serve(
            &config.metrics_bind_address,
            Endpoints::Metrics,
            health.clone(),
            shutdown.clone(),
        )?);
        servers.extend(http::serve(
            &config.health_probe_bind_address,
            Endpoints::Probes,
            health.clone(),
            shutdown.clone(),
        )?);
    }
    Ok(servers)
}

/// Marks the process ready, and opens the gate the workers start behind, once every watch has finished its
/// initial list.
struct ListsDone {
    remaining: Mutex<usize>,
    health: Arc<Health>,
    synced: Gate,
}

impl ListsDone {
    fn new(watches: usize, health: Arc<Health>) -> Self {
        ListsDone {
            remaining: Mutex::new(watches),
            health,
            synced: Gate::new(),
        }
    }

    fn one_done(&self) {
        let mut remaining = lock(&self.remaining);
        *remaining = remaining.saturating_sub(1);
        if *remaining == 0 {
            self.health.set_ready(true);
            self.synced.set_open(true);
            log::info!("initial lists complete; ready");
        }
    }
}

/// What every watch thread shares.
struct WatchContext {
    client: Client,
    namespace: Option<String>,
    queue: Arc<Queue<WorkKey>>,
    lists_done: Arc<ListsDone>,
    ctx: Arc<Context>,
    shutdown: Shutdown,
}

/// Starts a named thread running `watcher`, whose events go to `consume`; tells `lists_done` after the first
/// complete list.
fn spawn_watch<K: crate::kube::types::Resource + Send + 'static>(
    watch: &WatchContext,
    name: &'static str,
    params: ListParams,
    mut consume: impl FnMut(Event<K>) + Send + 'static,
) -> Result<(), String> {
    let resource = name.trim_start_matches("watch-");
    let watcher = Watcher::new(watch.client.clone(), watch.namespace.clone(), params, name)
        .on_restart(move |reason| metrics().watch_restart(resource, reason));
    let (lists_done, shutdown) = (watch.lists_done.clone(), watch.shutdown.clone());
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut first_list = true;
            watcher.run::<K>(&shutdown, |event| {
                let list_done = matches!(event, Event::ListDone);
                consume(event);
                if list_done && std::mem::take(&mut first_list) {
                    lists_done.one_done();
                }
            })
        })
        .map_err(|e| format!("cannot start the {resource} watch: {e}"))?;
    Ok(())
}

/// Watches every ServiceAccount; the cache keeps the configured ones and says which need a reconcile.
fn start_service_account_watch(watch: &WatchContext) -> Result<(), String> {
    let (queue, ctx) = (watch.queue.clone(), watch.ctx.clone());
    spawn_watch::<ServiceAccount>(
        watch,
        "watch-serviceaccounts",
        ListParams::default(),
        move |event| {
            for action in ctx.caches.service_account_event(event) {
                match action {
                    SaAction::Reconcile(key) => queue.add(WorkKey::ServiceAccount(key)),
                    SaAction::Forget(key) => {
                        queue.remove(&WorkKey::ServiceAccount(key.clone()));
                        queue.remove(&WorkKey::Pods(key.clone()));
                        ctx.forget(&key);
                        metrics().forget_service_account(key.namespace(), key.name());
                    }
                }
            }
        },
    )
}

/// Watches the secrets carrying the service-account label; the cache keeps what freshness and repair need
/// (never the data) and says which ServiceAccount a change concerns, so a deleted or edited secret is
/// repaired at once. Also keeps the expiry gauge in step with the secrets as stored, on every replica: a new
/// leader or a restarted process reports secrets it did not write itself, and a replica that lost the lease
/// does not keep counting down secrets another has since refreshed.
fn start_secret_watch(watch: &WatchContext) -> Result<(), String> {
    let params = ListParams {
        label_selector: Some(keys::SERVICE_ACCOUNT_LABEL.to_string()),
        ..Default::default()
    };
    let (queue, ctx) = (watch.queue.clone(), watch.ctx.clone());
    let mut relist = Relist::default();
    spawn_watch::<Secret>(watch, "watch-secrets", params, move |event| {
        match &event {
            Event::ListStarted => relist.start(),
            Event::ListDone => {
                // Secrets deleted while no watch was open: drop their series.
                if let Some(listed) = relist.finish() {
                    metrics().retain_secrets(|namespace, name| listed.contains(namespace, name));
                }
            }
            Event::Deleted(secret) => {
                metrics().forget_secret(&secret.metadata.namespace, &secret.metadata.name)
            }
            Event::Listed(secret) | Event::Applied(secret) => {
                let meta = &secret.metadata;
                relist.saw(&meta.namespace, &meta.name);
                let owner = meta
                    .owner_references
                    .iter()
                    .find(|r| r.kind == "ServiceAccount" && r.api_version == "v1")
                    .map(|r| r.name.as_str())
                    .or_else(|| {
                        meta.labels
                            .get(keys::SERVICE_ACCOUNT_LABEL)
                            .map(String::as_str)
                    });
                let expires_at = meta
                    .annotations
                    .get(keys::EXPIRES_AT)
                    .and_then(|at| crate::secret::parse_time(at));
                if let (Some(owner), Some(expires_at)) = (owner, expires_at) {
                    metrics().set_secret_expiry(&meta.namespace, owner, &meta.name, expires_at);
                }
            }
        }
        for key in ctx.caches.secret_event(event) {
            queue.add(WorkKey::ServiceAccount(key));
        }
    })
}

/// Watches pending pods; the cache keeps those of configured ServiceAccounts, reduced to what eviction needs,
/// and a change queues a look at that ServiceAccount's pods.
fn start_pod_watch(watch: &WatchContext) -> Result<(), String> {
    let params = ListParams {
        field_selector: Some("status.phase=Pending".to_string()),
        ..Default::default()
    };
    let (queue, ctx) = (watch.queue.clone(), watch.ctx.clone());
    spawn_watch::<Pod>(watch, "watch-pods", params, move |event| {
        if let Some(key) = ctx.caches.pod_event(event) {
            queue.add(WorkKey::Pods(key));
        }
    })
}

/// How long an idle worker blocks before telling `/healthz` it is still alive.
const IDLE_BEAT: Duration = Duration::from_secs(60);

/// One worker thread: takes keys while this process is the leader, reconciles, schedules what comes next.
struct Worker {
    name: String,
    ctx: Arc<Context>,
    queue: Arc<Queue<WorkKey>>,
    is_leader: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Open while this process leads; standby workers block on it.
    leading: Arc<Gate>,
    health: Arc<Health>,
}

impl Worker {
    fn run(&self) {
        loop {
            self.health.beat(&self.name);
            if self.queue.is_shut_down() {
                return;
            }
            if !(self.is_leader)() {
                // A standby keeps its queue (the watches keep filling it) but takes nothing from it.
                if self.leading.wait_open(IDLE_BEAT) && !(self.is_leader)() {
                    // The term ran out before the elector noticed: a moment until it does.
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            let Some(key) = self.queue.get_timeout(Some(IDLE_BEAT)) else {
                continue;
            };
            if !(self.is_leader)() {
                self.queue.done(&key);
                self.queue.add(key);
                continue;
            }
            self.process(&key);
            self.queue.done(&key);
        }
    }

    fn process(&self, key: &WorkKey) {
        let started = Instant::now();
        match key {
            WorkKey::ServiceAccount(service_account) => {
                match service_account::reconcile(&self.ctx, service_account) {
                    Ok(outcome) => {
                        self.queue.forget(key);
                        log::debug!(
                            "{service_account}: reconciled in {:?}; next run in {:?}",
                            started.elapsed(),
                            outcome.requeue_after
                        );
                        if let Some(delay) = outcome.requeue_after {
                            self.queue.add_after(key.clone(), delay);
                        }
                        if outcome.check_pods {
                            self.queue.add(WorkKey::Pods(service_account.clone()));
                        }
                    }
                    Err(error) => self.retry(key, service_account, &error),
                }
            }
            WorkKey::Pods(service_account) => {
                // Pods that may still fail are looked at again when the pod watch brings their next status.
                match evictor::check_pods(&self.ctx, service_account) {
                    Ok(_) => self.queue.forget(key),
                    Err(error) => self.retry(key, service_account, &error),
                }
            }
        }
    }

    fn retry(&self, key: &WorkKey, service_account: &ObjectKey, error: &ReconcileError) {
        let attempt = self.queue.failures(key) + 1;
        let delay = self.queue.add_after_failure(key.clone(), error.retry);
        metrics().queue_retry();
        log::warn!(namespace = service_account.namespace(), serviceaccount = service_account.name(); "{error} (attempt {attempt}; retrying in {:.1}s)", delay.as_secs_f64());
    }
}
