//! Ingress status: `status.loadBalancer.ingress` set to the published addresses on every Ingress
//! of fjord's class, written by the Lease holder only, and only where it differs.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::networking::v1::{
    IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus,
};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// An Ingress of fjord's class as last seen: where it is, its version, what its status says.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Seen {
    pub namespace: String,
    pub name: String,
    pub resource_version: String,
    /// `(ip, hostname)` of each `status.loadBalancer.ingress` entry.
    pub addresses: Vec<(Option<String>, Option<String>)>,
}

impl Seen {
    pub(crate) fn of(ingress: &Ingress) -> Self {
        let addresses = ingress
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|list| {
                list.iter()
                    .map(|a| (a.ip.clone(), a.hostname.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            namespace: ingress
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: ingress.metadata.name.clone().unwrap_or_default(),
            resource_version: ingress
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default(),
            addresses,
        }
    }
}

/// The status entries for `published` (IP addresses or host names).
pub(crate) fn addresses(published: &[String]) -> Vec<(Option<String>, Option<String>)> {
    published
        .iter()
        .map(|a| match a.parse::<std::net::IpAddr>() {
            Ok(ip) => (Some(ip.to_string()), None),
            Err(_) => (None, Some(a.clone())),
        })
        .collect()
}

/// Keeps the status of fjord's Ingresses at `desired` while `leader` says this replica leads.
pub(crate) async fn publish(
    client: kube::Client,
    desired: Vec<(Option<String>, Option<String>)>,
    mut leader: watch::Receiver<bool>,
    mut ingresses: watch::Receiver<Arc<Vec<Seen>>>,
    shutdown: CancellationToken,
) {
    let status = IngressStatus {
        load_balancer: Some(IngressLoadBalancerStatus {
            ingress: Some(
                desired
                    .iter()
                    .map(|(ip, hostname)| IngressLoadBalancerIngress {
                        ip: ip.clone(),
                        hostname: hostname.clone(),
                        ports: None,
                    })
                    .collect(),
            ),
        }),
    };
    // The version each Ingress had when this replica wrote it: until a newer version is seen,
    // the write is in flight, not missing.
    let mut written: HashMap<(String, String), String> = HashMap::new();
    loop {
        if *leader.borrow_and_update() {
            let seen = Arc::clone(&ingresses.borrow_and_update());
            for ing in seen.iter() {
                let key = (ing.namespace.clone(), ing.name.clone());
                if ing.addresses == desired || written.get(&key) == Some(&ing.resource_version) {
                    continue;
                }
                let api: Api<Ingress> = Api::namespaced(client.clone(), &ing.namespace);
                match write(&api, &ing.name, &status).await {
                    Ok(_) => {
                        tracing::info!(ingress = %format!("{}/{}", ing.namespace, ing.name), "status written");
                        written.insert(key, ing.resource_version.clone());
                    }
                    Err(e) => {
                        tracing::warn!(ingress = %format!("{}/{}", ing.namespace, ing.name), error = %e, "cannot write Ingress status");
                    }
                }
            }
        } else {
            written.clear();
        }
        tokio::select! {
            r = leader.changed() => if r.is_err() { return },
            r = ingresses.changed() => if r.is_err() { return },
            () = shutdown.cancelled() => return,
        }
    }
}

/// Reads the Ingress and puts its status back with `status` (an `update` of `ingresses/status`,
/// guarded by the version just read, so a concurrent change is not overwritten).
async fn write(api: &Api<Ingress>, name: &str, status: &IngressStatus) -> Result<(), kube::Error> {
    let mut ingress = api.get(name).await?;
    ingress.status = Some(status.clone());
    ingress.metadata.managed_fields = None;
    api.replace_status(name, &PostParams::default(), &ingress)
        .await?;
    Ok(())
}
