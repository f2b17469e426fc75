//! Wiring: flags → clients → watch threads → work queue → workers, until shutdown.
//!
//! What must stay true: memory grows only with configured ServiceAccounts (the ServiceAccount watch keeps the
//! keys of configured ones, the secret watch keeps nothing); only the leader writes; shutdown stops taking
//! work, lets running reconciles finish (bounded), and only then releases the lease.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::annotations as keys;
use crate::cloud::aws::AwsClient;
use crate::cloud::azure::AzureClient;
use crate::cloud::google::GoogleClient;
use crate::cloud::http::{ProviderHttp, RetryPolicy};
use crate::cloud::{Clouds, CredentialSource};
use crate::config::Config;
use crate::http::{self, Endpoints, Health};
use crate::kube::types::{SecretMetadata, ServiceAccount};
use crate::kube::{Client, Connection, ListParams};
use crate::metrics::metrics;
use crate::reconcile::events::EventRecorder;
use crate::reconcile::{evictor, service_account, Context, Options, OwnWrites, ReconcileError};
use crate::runtime::leader::{default_identity, LeaderConfig, LeaderElector};
use crate::runtime::queue::{BackoffPolicy, Queue};
use crate::runtime::watcher::{Event, Watcher};
use crate::shutdown::Shutdown;

/// A unit of work: a ServiceAccount to reconcile, or its pending pods to look at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkKey {
    ServiceAccount { namespace: String, name: String },
    Pods { namespace: String, name: String },
}

/// How long running reconciles may take to finish once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// A worker that has not come back to the queue for this long is reported stuck by `/healthz`.
const WORKER_MAX_SILENCE: Duration = Duration::from_secs(300);

/// Connects to the API server as configured: `--kubeconfig`, else `KUBECONFIG`, else in-cluster, else
/// `~/.kube/config`. Also
/// returns the connection's namespace: the pod's own in-cluster, the context's with a kubeconfig.
pub fn connect(config: &Config) -> Result<(Client, Option<String>), String> {
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
        Some(elector.spawn(leader_shutdown.clone(), |leading| {
            log::info!(
                "{}",
                if leading {
                    "became the leader"
                } else {
                    "stopped being the leader"
                }
            );
        })?)
    } else {
        metrics().set_leader(true);
        None
    };

    let own_writes = Arc::new(OwnWrites::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        clouds,
        events: EventRecorder::new(client.clone(), &identity, Duration::from_secs(300)),
        options: Options {
            token_expiration: config.token_expiration,
            min_requeue: config.min_refresh_interval,
            pod_eviction: config.pod_eviction,
            max_principals: config.max_principals_per_service_account,
            ..Options::default()
        },
        may_act: is_leader.clone(),
        own_writes: own_writes.clone(),
    });
    let queue = Arc::new(
        Queue::new(BackoffPolicy::default())
            .with_depth_observer(|depth| metrics().set_queue_depth(depth)),
    );
    let lists_done = Arc::new(ListsDone::new(2, health.clone()));

    start_service_account_watch(
        &client,
        &config,
        &queue,
        &lists_done,
        &own_writes,
        &shutdown,
    )?;
    start_secret_watch(
        &client,
        &config,
        &queue,
        &lists_done,
        &own_writes,
        &shutdown,
    )?;

    let rechecks = Arc::new(Mutex::new(HashMap::new()));
    let mut workers = Vec::new();
    for index in 0..config.workers {
        let name = format!("worker-{index}");
        health.register(&name, WORKER_MAX_SILENCE);
        let worker = Worker {
            name: name.clone(),
            ctx: ctx.clone(),
            queue: queue.clone(),
            is_leader: is_leader.clone(),
            health: health.clone(),
            rechecks: rechecks.clone(),
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

    while !shutdown.sleep(Duration::from_secs(1)) {}

    log::info!(
        "stopping: no new work is taken; waiting up to {DRAIN_TIMEOUT:?} for running reconciles"
    );
    queue.shut_down();
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    for done in workers {
        let left = deadline.saturating_duration_since(Instant::now());
        if done.recv_timeout(left).is_err() {
            log::warn!("a reconcile did not finish within {DRAIN_TIMEOUT:?}; exiting anyway");
            break;
        }
    }
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

/// Marks the process ready once every watch has finished its initial list.
struct ListsDone {
    remaining: Mutex<usize>,
    health: Arc<Health>,
}

impl ListsDone {
    fn new(watches: usize, health: Arc<Health>) -> Self {
        ListsDone {
            remaining: Mutex::new(watches),
            health,
        }
    }

    fn one_done(&self) {
        let mut remaining = self.remaining.lock().unwrap_or_else(|p| p.into_inner());
        *remaining = remaining.saturating_sub(1);
        if *remaining == 0 {
            self.health.set_ready(true);
            log::info!("initial lists complete; ready");
        }
    }
}

fn is_configured(sa: &ServiceAccount) -> bool {
    keys::CONFIGURATION_KEYS.iter().any(|k| {
        sa.metadata
            .annotations
            .get(*k)
            .is_some_and(|v| !v.trim().is_empty())
    })
}

fn service_account_key(namespace: &str, name: &str) -> WorkKey {
    WorkKey::ServiceAccount {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// Watches every ServiceAccount, enqueueing configured ones (and ones that just stopped being configured).
/// Remembers only the keys of configured ServiceAccounts.
fn start_service_account_watch(
    client: &Client,
    config: &Config,
    queue: &Arc<Queue<WorkKey>>,
    lists_done: &Arc<ListsDone>,
    own_writes: &Arc<OwnWrites>,
    shutdown: &Shutdown,
) -> Result<(), String> {
    let watcher = Watcher::new(
        client.clone(),
        config.namespace.clone(),
        ListParams::default(),
        "watch-serviceaccounts",
    )
    .on_restart(|reason| metrics().watch_restart("serviceaccounts", reason));
    let (queue, lists_done, shutdown) = (queue.clone(), lists_done.clone(), shutdown.clone());
    let own_writes = own_writes.clone();
    std::thread::Builder::new()
        .name("watch-serviceaccounts".into())
        .spawn(move || {
            let mut configured: HashSet<(String, String)> = HashSet::new();
            let mut listed: Option<HashSet<(String, String)>> = None;
            let mut first_list = true;
            watcher.run::<ServiceAccount>(&shutdown, |event| match event {
                Event::ListStarted => listed = Some(HashSet::new()),
                Event::Listed(sa) | Event::Applied(sa) => {
                    let key = (sa.metadata.namespace.clone(), sa.metadata.name.clone());
                    if let Some(listed) = listed.as_mut() {
                        listed.insert(key.clone());
                    }
                    let now_configured = is_configured(&sa);
                    let was_configured = if now_configured {
                        !configured.insert(key.clone())
                    } else {
                        configured.remove(&key)
                    };
                    // The echo of this process's own update needs no second look.
                    let own = own_writes.is_own("ServiceAccount", &sa.metadata);
                    if (now_configured || was_configured) && !own {
                        queue.add(service_account_key(&key.0, &key.1));
                    }
                }
                Event::Deleted(sa) => {
                    let key = (sa.metadata.namespace.clone(), sa.metadata.name.clone());
                    if configured.remove(&key) {
                        queue.remove(&service_account_key(&key.0, &key.1));
                        metrics().forget_service_account(&key.0, &key.1);
                    }
                }
                Event::ListDone => {
                    // ServiceAccounts deleted while no watch was open: forget them.
                    if let Some(listed) = listed.take() {
                        for (namespace, name) in configured.iter().filter(|k| !listed.contains(*k))
                        {
                            queue.remove(&service_account_key(namespace, name));
                            metrics().forget_service_account(namespace, name);
                        }
                        configured.retain(|k| listed.contains(k));
                    }
                    if std::mem::take(&mut first_list) {
                        lists_done.one_done();
                    }
                }
            })
        })
        .map_err(|e| format!("cannot start the serviceaccount watch: {e}"))?;
    Ok(())
}

/// Watches the secrets this controller owns (by label) and enqueues their ServiceAccount on any change, so a
/// deleted or edited secret is repaired at once. Keeps the expiry gauge in step with the secrets as stored,
/// on every replica: a new leader or a restarted process reports secrets it did not write itself, and a
/// replica that lost the lease does not keep counting down secrets another has since refreshed. Remembers
/// nothing else.
fn start_secret_watch(
    client: &Client,
    config: &Config,
    queue: &Arc<Queue<WorkKey>>,
    lists_done: &Arc<ListsDone>,
    own_writes: &Arc<OwnWrites>,
    shutdown: &Shutdown,
) -> Result<(), String> {
    let params = ListParams {
        label_selector: Some(keys::SERVICE_ACCOUNT_LABEL.to_string()),
        ..Default::default()
    };
    let watcher = Watcher::new(
        client.clone(),
        config.namespace.clone(),
        params,
        "watch-secrets",
    )
    .on_restart(|reason| metrics().watch_restart("secrets", reason));
    let (queue, lists_done, shutdown) = (queue.clone(), lists_done.clone(), shutdown.clone());
    let own_writes = own_writes.clone();
    std::thread::Builder::new()
        .name("watch-secrets".into())
        .spawn(move || {
            let mut first_list = true;
            let mut listed: Option<HashSet<(String, String)>> = None;
            watcher.run::<SecretMetadata>(&shutdown, |event| {
                let (secret, deleted) = match event {
                    Event::Listed(secret) | Event::Applied(secret) => (secret, false),
                    Event::Deleted(secret) => (secret, true),
                    Event::ListStarted => {
                        listed = Some(HashSet::new());
                        return;
                    }
                    Event::ListDone => {
                        // Secrets deleted while no watch was open: drop their series.
                        if let Some(listed) = listed.take() {
                            metrics().retain_secrets(|namespace, name| {
                                listed.contains(&(namespace.to_string(), name.to_string()))
                            });
                        }
                        if std::mem::take(&mut first_list) {
                            lists_done.one_done();
                        }
                        return;
                    }
                };
                let meta = &secret.metadata;
                let owner = meta
                    .owner_references
                    .iter()
                    .find(|r| r.kind == "ServiceAccount" && r.api_version == "v1")
                    .map(|r| r.name.clone())
                    .or_else(|| meta.labels.get(keys::SERVICE_ACCOUNT_LABEL).cloned());
                if deleted {
                    metrics().forget_secret(&meta.namespace, &meta.name);
                } else {
                    if let Some(listed) = listed.as_mut() {
                        listed.insert((meta.namespace.clone(), meta.name.clone()));
                    }
                    let expires_at = meta
                        .annotations
                        .get(keys::EXPIRES_AT)
                        .and_then(|at| crate::secret::parse_time(at));
                    if let (Some(owner), Some(expires_at)) = (&owner, expires_at) {
                        metrics().set_secret_expiry(&meta.namespace, owner, &meta.name, expires_at);
                    }
                }
                let own = !deleted && own_writes.is_own("Secret", meta);
                if let (Some(owner), false) = (owner, own) {
                    queue.add(service_account_key(&meta.namespace, &owner));
                }
            })
        })
        .map_err(|e| format!("cannot start the secret watch: {e}"))?;
    Ok(())
}

/// One worker thread: takes keys while this process is the leader, reconciles, schedules what comes next.
struct Worker {
    name: String,
    ctx: Arc<Context>,
    queue: Arc<Queue<WorkKey>>,
    is_leader: Arc<dyn Fn() -> bool + Send + Sync>,
    health: Arc<Health>,
    rechecks: Arc<Mutex<HashMap<(String, String), u32>>>,
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
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let Some(key) = self.queue.get_timeout(Some(Duration::from_secs(1))) else {
                continue;
            };
            self.process(&key);
            self.queue.done(&key);
        }
    }

    fn process(&self, key: &WorkKey) {
        let started = Instant::now();
        match key {
            WorkKey::ServiceAccount { namespace, name } => {
                match service_account::reconcile(&self.ctx, namespace, name) {
                    Ok(outcome) => {
                        self.queue.forget(key);
                        log::debug!(
                            "{namespace}/{name}: reconciled in {:?}; next run in {:?}",
                            started.elapsed(),
                            outcome.requeue_after
                        );
                        if let Some(delay) = outcome.requeue_after {
                            self.queue.add_after(key.clone(), delay);
                        }
                        if outcome.check_pods {
                            // A fresh look at the pods gets a fresh allowance of re-checks.
                            self.rechecks
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&(namespace.clone(), name.clone()));
                            self.queue.add(WorkKey::Pods {
                                namespace: namespace.clone(),
                                name: name.clone(),
                            });
                        }
                    }
                    Err(error) => self.retry(key, namespace, name, &error),
                }
            }
            WorkKey::Pods { namespace, name } => {
                match evictor::check_pods(&self.ctx, namespace, name) {
                    Ok(recheck) => {
                        self.queue.forget(key);
                        let mut rechecks = self.rechecks.lock().unwrap_or_else(|p| p.into_inner());
                        let count_key = (namespace.clone(), name.clone());
                        if recheck {
                            let count = rechecks.entry(count_key).or_insert(0);
                            *count += 1;
                            if *count <= self.ctx.options.pod_recheck_limit {
                                self.queue
                                    .add_after(key.clone(), self.ctx.options.pod_recheck_interval);
                            }
                        } else {
                            rechecks.remove(&count_key);
                        }
                    }
                    Err(error) => self.retry(key, namespace, name, &error),
                }
            }
        }
    }

    fn retry(&self, key: &WorkKey, namespace: &str, name: &str, error: &ReconcileError) {
        let attempt = self.queue.failures(key) + 1;
        let delay = self.queue.add_after_failure(key.clone(), error.retry);
        metrics().queue_retry();
        log::warn!(namespace = namespace, serviceaccount = name; "{error} (attempt {attempt}; retrying in {:.1}s)", delay.as_secs_f64());
    }
}
