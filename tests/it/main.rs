//! The integration tests: one binary, one module per behaviour, the helpers once in [`support`].
//!
//! Every test runs against the real peers that `scripts/testenv` starts on 127.0.0.1 (kube-apiserver and etcd,
//! moto, the Google and Azure stand-ins, tinyproxy, a distribution registry, helm and promtool). `scripts/test`
//! starts one control plane for the whole binary and passes it in `IPSP_TESTENV`; a lone
//! `cargo test --test it -- NAME` starts its own. The benchmark (`bench`) is `#[ignore]`d and run by
//! `scripts/bench`.

mod support;

mod alerts;
mod bench;
mod check;
mod compat;
mod eviction;
mod faults;
mod image;
mod kube_client;
mod kubeconfig;
mod leader;
mod operations;
mod outage;
mod ownership;
mod packaging;
mod principals;
mod probes;
mod providers;
mod provisioning;
mod proxy;
mod rbac;
mod readme;
mod refresh;
mod release;
mod repair;
mod sigv4;
mod watches;
