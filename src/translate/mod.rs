//! Kubernetes objects in, the routing [`Config`] and diagnostics out. Pure: no I/O, no clock.
//!
//! One bad object yields diagnostics naming it and is left out; the rest are translated. An
//! object whose new version is rejected is translated as its last good version, when there
//! is one ([`LastGood`]).

mod agreed;
mod backend;
pub mod class;
mod ingress;
mod ingressroute;
mod keep;
pub mod middleware;
mod nginx;
pub mod tls;
mod tls_option;
mod tls_store;
mod traefik_service;

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::diagnostics::Diagnostic;
pub use crate::model::Config;
use crate::provider::{ObjectKey, Store};
pub use keep::LastGood;

/// Settings of the translation that come from the static configuration.
#[derive(Clone, Debug)]
pub struct Options {
    /// The IngressClass name served even when no IngressClass object exists; default `fjord`.
    pub ingress_class: String,
    /// Other controllers' classes served too, during a move off them.
    pub also_serve_classes: Vec<String>,
    /// The configured ACME certificate resolvers.
    pub resolvers: BTreeSet<String>,
    /// Whether an IngressRoute may send traffic to Services of other namespaces.
    pub allow_cross_namespace: bool,
    /// The configured entry points, which an IngressRoute's `entryPoints` must name.
    pub entry_points: BTreeSet<String>,
    /// Which routes may name `api@internal`.
    pub api: ApiAccess,
}

/// Which IngressRoutes may route to fjord's own API and dashboard (`api@internal`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ApiAccess {
    /// None: `api.dashboard` is off.
    #[default]
    Off,
    /// Any (a manifests folder, which one team writes).
    Anywhere,
    /// Those in this namespace only: fjord's own, in a cluster, so that a tenant cannot
    /// publish every route and backend of the cluster.
    Namespace(String),
}

impl Options {
    /// The translation's settings in `config`.
    pub fn from_config(config: &crate::config::StaticConfig) -> Self {
        Self {
            ingress_class: config.providers.kubernetes_ingress.ingress_class.clone(),
            also_serve_classes: config
                .providers
                .kubernetes_ingress
                .also_serve_classes
                .clone(),
            resolvers: config.certificates_resolvers.keys().cloned().collect(),
            allow_cross_namespace: config.providers.kubernetes_crd.allow_cross_namespace,
            entry_points: config.entry_points.keys().cloned().collect(),
            api: if config.api.dashboard {
                ApiAccess::Anywhere
            } else {
                ApiAccess::Off
            },
        }
    }
}

/// The result of [`translate`].
#[derive(Debug, Default)]
pub struct Translation {
    /// What fjord routes.
    pub config: Config,
    /// Every problem found, errors first.
    pub diagnostics: Vec<Diagnostic>,
    /// Objects whose version in the store was rejected: Ingresses and IngressRoutes left out
    /// as a whole, TLS Secrets that do not parse.
    pub rejected: BTreeSet<ObjectKey>,
}

impl Translation {
    /// Whether any object, or part of one, was rejected.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// One translation under way: what it reads, and what it has produced so far.
struct Cx<'s> {
    store: &'s Store,
    options: &'s Options,
    last: &'s LastGood,
    resolver: backend::Resolver<'s>,
    middlewares: middleware::Middlewares<'s>,
    out: Translation,
}

impl Cx<'_> {
    /// Rejects the version in the store of the object `key`, for `errors`, each ending in
    /// `suffix` (what is served instead, if anything: [`keep::suffix`]).
    fn reject(&mut self, subject: &str, key: ObjectKey, errors: Vec<String>, suffix: &str) {
        for mut e in errors {
            e.push_str(suffix);
            self.out.diagnostics.push(Diagnostic::error(subject, e));
        }
        self.out.rejected.insert(key);
    }
}

/// Translates the objects of `store` into a routing config; an object whose version there is
/// rejected is translated as its version in `last`, if it has one.
pub fn translate(store: &Store, options: &Options, last: &LastGood) -> Translation {
    let mut cx = Cx {
        store,
        options,
        last,
        resolver: backend::Resolver::new(store),
        middlewares: middleware::Middlewares::new(store, options.allow_cross_namespace),
        out: Translation::default(),
    };
    cx.middlewares.check_all(&mut cx.out.diagnostics);
    let policies = tls_option::compile_all(&mut cx);
    ingress::translate_all(&mut cx);
    ingressroute::translate_all(&mut cx, &policies);
    // After the routes': their certificates win a name over the store's.
    tls_store::translate_all(&mut cx);
    let mut out = cx.out;
    out.config.acme.sort();
    out.config.acme.dedup();
    // Errors first, then by object: a stable listing for `fjord check` and the logs.
    out.diagnostics.sort();
    out
}

/// Re-resolves every backend's endpoints from `store`, leaving the routes as they are: the
/// cheap path for a change that touched only EndpointSlices.
pub fn refresh_endpoints(store: &Store, config: &mut Config) {
    let resolver = backend::Resolver::new(store);
    for (id, spec) in &mut config.backends {
        if id.is_internal() {
            continue;
        }
        *spec = backend::refresh(&resolver, id, spec);
    }
}

/// The order in which objects win conflicts: the oldest first, then by namespace and name.
/// Objects without a creationTimestamp (a manifests folder) count as newest.
fn oldest_first(meta: &ObjectMeta) -> (bool, Option<&Time>, Option<&str>, Option<&str>) {
    let created = meta.creation_timestamp.as_ref();
    (
        created.is_none(),
        created,
        meta.namespace.as_deref(),
        meta.name.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AcmeRequest;
    use crate::provider::decode::{Decoded, decode};

    fn store(yaml: &str) -> Store {
        let mut store = Store::default();
        for doc in serde_saphyr::from_multiple::<serde_json::Value>(yaml).unwrap() {
            let mut out = Vec::new();
            decode(doc, "test.yaml", &mut out);
            for d in out {
                match d {
                    Decoded::Object(o) => store.insert(o).unwrap(),
                    other => panic!("{other:?}"),
                }
            }
        }
        store
    }

    fn options() -> Options {
        Options {
            ingress_class: "fjord".into(),
            also_serve_classes: Vec::new(),
            resolvers: ["default".to_owned()].into(),
            allow_cross_namespace: false,
            entry_points: ["web".to_owned(), "websecure".to_owned()].into(),
            api: ApiAccess::Off,
        }
    }

    const INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: shop}\nspec:\n  ingressClassName: fjord\n  rules:\n  - host: shop.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}\n";

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - {name: metrics, port: 9090, targetPort: 9090}\n  - {name: http, port: 80, targetPort: web}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\nports:\n- {name: metrics, port: 9090}\n- {name: http, port: 8080}\nendpoints:\n- addresses: [10.0.0.1]\n  conditions: {ready: true}\n- addresses: [10.0.0.2]\n- addresses: [10.0.0.3]\n  conditions: {ready: false}\n";

    fn endpoints(t: &Translation) -> Vec<String> {
        let backend = &t.config.routes[0].target.backend;
        t.config.backends[backend]
            .endpoints
            .iter()
            .map(|e| e.addr.to_string())
            .collect()
    }

    #[test]
    fn named_port_maps_through_the_slice_and_only_ready_endpoints_count() {
        let t = translate(
            &store(&format!("{INGRESS}---\n{SERVICE}")),
            &options(),
            &LastGood::default(),
        );
        assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
        // 10.0.0.2 has no `ready` condition: unknown counts as ready.
        assert_eq!(endpoints(&t), ["10.0.0.1:8080", "10.0.0.2:8080"]);
    }

    #[test]
    fn external_name_services_resolve_by_dns() {
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {type: ExternalName, externalName: api.example.net, ports: [{name: http, port: 443}]}\n";
        let t = translate(
            &store(&format!("{INGRESS}---\n{svc}")),
            &options(),
            &LastGood::default(),
        );
        assert_eq!(endpoints(&t), ["api.example.net:443"]);
    }

    #[test]
    fn acme_names_come_from_annotated_ingresses_and_wildcards_are_refused() {
        let ing = INGRESS
            .replace(
                "metadata: {name: shop}",
                "metadata: {name: shop, annotations: {kubernetes.io/tls-acme: \"true\"}}",
            )
            .replace(
                "  rules:\n",
                "  tls:\n  - hosts: [shop.test, \"*.shop.test\", www.shop.test]\n  rules:\n",
            );
        let t = translate(
            &store(&format!("{ing}---\n{SERVICE}")),
            &options(),
            &LastGood::default(),
        );
        assert_eq!(
            t.config.acme,
            [AcmeRequest {
                resolver: "default".into(),
                names: vec!["shop.test".into(), "www.shop.test".into()],
            }]
        );
        let d: Vec<String> = t.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(
            d,
            [
                r#"error: Ingress default/shop: spec.tls[0].hosts "*.shop.test": a wildcard needs the DNS-01 challenge, which fjord does not do; use a Secret"#
            ]
        );
        let unknown = ing.replace(
            "kubernetes.io/tls-acme: \"true\"",
            "fjord.dev/cert-resolver: staging",
        );
        let t = translate(
            &store(&format!("{unknown}---\n{SERVICE}")),
            &options(),
            &LastGood::default(),
        );
        assert!(t.config.acme.is_empty());
        assert!(
            t.diagnostics[0]
                .message
                .contains(r#"certificate resolver "staging" is not configured"#)
        );
    }

    #[test]
    fn ingress_route_tls_asks_a_resolver_for_its_rule_hosts_and_cross_namespace_needs_consent() {
        let ir = "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: shop}\nspec:\n  routes:\n  - match: Host(`shop.test`) || Host(`www.shop.test`)\n    services: [{name: web, port: http}]\n  tls: {certResolver: default}\n";
        let t = translate(
            &store(&format!("{ir}---\n{SERVICE}")),
            &options(),
            &LastGood::default(),
        );
        assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
        assert_eq!(t.config.acme[0].names, ["shop.test", "www.shop.test"]);
        assert_eq!(t.config.rule_routes.len(), 1);

        let cross = ir.replace(
            "{name: web, port: http}",
            "{name: web, port: http, namespace: other}",
        );
        let t = translate(&store(&cross), &options(), &LastGood::default());
        assert!(t.config.rule_routes.is_empty());
        assert!(
            t.diagnostics[0]
                .message
                .contains("cross-namespace references are off"),
            "{:?}",
            t.diagnostics
        );
        let allowed = Options {
            allow_cross_namespace: true,
            ..options()
        };
        assert_eq!(
            translate(&store(&cross), &allowed, &LastGood::default())
                .config
                .rule_routes
                .len(),
            1
        );
    }

    #[test]
    fn rule_priority_is_the_rule_length_unless_set() {
        let ir = "apiVersion: fjord.dev/v1alpha1\nkind: IngressRoute\nmetadata: {name: shop}\nspec:\n  routes:\n  - match: Host(`shop.test`)\n    priority: 1000\n    services: [{name: web, port: http}]\n  - match: Host(`shop.test`) && PathPrefix(`/api`)\n    services: [{name: web, port: http}]\n  - match: PathPrefix(`/x`)\n    services: [{name: web, port: http}]\n";
        let t = translate(
            &store(&format!("{ir}---\n{SERVICE}")),
            &options(),
            &LastGood::default(),
        );
        let priorities: Vec<i64> = t.config.rule_routes.iter().map(|r| r.priority).collect();
        assert_eq!(
            priorities,
            [1000, 39, 16],
            "explicit first, then by rule length"
        );
    }

    /// Translates `store` after `last`, and what to keep for the next.
    fn after(last: LastGood, store: Store) -> (Translation, LastGood) {
        let t = translate(&store, &options(), &last);
        let next = last.next(store, &t);
        (t, next)
    }

    #[test]
    fn a_rejected_edit_keeps_the_last_good_version() {
        let good = store(&format!("{INGRESS}---\n{SERVICE}"));
        let (t, accepted) = after(LastGood::default(), good);
        assert_eq!(t.config.routes.len(), 1);

        let bad = store(&format!(
            "{}---\n{SERVICE}",
            INGRESS.replace("Prefix", "Regex")
        ));
        let (t, accepted) = after(accepted, bad.clone());
        assert_eq!(
            t.config.routes.len(),
            1,
            "the last good version still routes"
        );
        assert_eq!(t.diagnostics.len(), 1);
        let d = t.diagnostics[0].to_string();
        assert!(
            d.contains("\"Regex\" is not Exact")
                && d.ends_with("still serving its last good version"),
            "{d}"
        );
        // Still rejected on the next reload: the last good version stays.
        let (t, accepted) = after(accepted, bad.clone());
        assert_eq!(t.config.routes.len(), 1);

        // Without a last good version, a rejected Ingress is simply left out.
        let (t, _) = after(LastGood::default(), bad);
        assert!(t.config.routes.is_empty());
        // Deleting the Ingress removes its routes, whatever was accepted before.
        let (t, _) = after(accepted, store(SERVICE));
        assert!(t.config.routes.is_empty());
    }
}
