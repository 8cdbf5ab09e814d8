//! Providers gather Kubernetes objects into one [`Store`]. Nothing downstream knows where an
//! object came from: the manifests folder and the API server fill the same store.

pub mod decode;
pub mod kubernetes;
pub mod manifests;

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{IngressRoute, Middleware, ServersTransport, TLSOption, TLSStore, TraefikService};

/// What one read of a provider produced: the objects, and what was wrong with the input they
/// came from (a file that does not parse; the API server's objects come already parsed).
#[derive(Debug, Default)]
pub struct Loaded {
    /// The objects.
    pub store: Store,
    /// What was wrong with the input, object by object.
    pub diagnostics: Vec<crate::diagnostics::Diagnostic>,
    /// Objects whose current version could not be read (a file that does not parse, an object
    /// that does not decode): their last good versions stand in for them.
    pub unreadable: std::collections::BTreeSet<ObjectKey>,
    /// Only EndpointSlices changed since the last load: routes stand, endpoints move.
    pub endpoints_only: bool,
}

/// A Kubernetes object fjord reads.
// Every variant is a few hundred bytes, so boxing would buy nothing but an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// `networking.k8s.io/v1` Ingress.
    Ingress(Ingress),
    /// `networking.k8s.io/v1` IngressClass.
    IngressClass(IngressClass),
    /// `v1` Service.
    Service(Service),
    /// `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// Kept for TLS termination and basic auth.
    Secret(Secret),
    /// A ConfigMap a ServersTransport names (a CA).
    ConfigMap(ConfigMap),
    /// fjord's IngressRoute.
    IngressRoute(IngressRoute),
    /// fjord's Middleware.
    Middleware(Middleware),
    /// fjord's TraefikService.
    TraefikService(TraefikService),
    /// fjord's ServersTransport.
    ServersTransport(ServersTransport),
    /// fjord's TLSOption.
    TlsOption(TLSOption),
    /// fjord's TLSStore.
    TlsStore(TLSStore),
}

impl Object {
    /// The object's kind, as in its manifest.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Ingress(_) => "Ingress",
            Object::IngressClass(_) => "IngressClass",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Secret(_) => "Secret",
            Object::ConfigMap(_) => "ConfigMap",
            Object::IngressRoute(_) => "IngressRoute",
            Object::Middleware(_) => "Middleware",
            Object::TraefikService(_) => "TraefikService",
            Object::ServersTransport(_) => "ServersTransport",
            Object::TlsOption(_) => "TLSOption",
            Object::TlsStore(_) => "TLSStore",
        }
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Ingress(o) => &o.metadata,
            Object::IngressClass(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::IngressRoute(o) => &o.metadata,
            Object::Middleware(o) => &o.metadata,
            Object::TraefikService(o) => &o.metadata,
            Object::ServersTransport(o) => &o.metadata,
            Object::TlsOption(o) => &o.metadata,
            Object::TlsStore(o) => &o.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Ingress(o) => &mut o.metadata,
            Object::IngressClass(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
            Object::IngressRoute(o) => &mut o.metadata,
            Object::Middleware(o) => &mut o.metadata,
            Object::TraefikService(o) => &mut o.metadata,
            Object::ServersTransport(o) => &mut o.metadata,
            Object::TlsOption(o) => &mut o.metadata,
            Object::TlsStore(o) => &mut o.metadata,
        }
    }

    /// The object's identity.
    pub fn key(&self) -> ObjectKey {
        let meta = self.meta();
        ObjectKey {
            kind: self.kind(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

macro_rules! object_from {
    ($($kind:ident),*) => {$(
        impl From<$kind> for Object {
            fn from(o: $kind) -> Self {
                Object::$kind(o)
            }
        }
    )*};
}
impl From<TLSOption> for Object {
    fn from(o: TLSOption) -> Self {
        Object::TlsOption(o)
    }
}

impl From<TLSStore> for Object {
    fn from(o: TLSStore) -> Self {
        Object::TlsStore(o)
    }
}

object_from!(
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Secret,
    ConfigMap,
    IngressRoute,
    Middleware,
    TraefikService,
    ServersTransport
);

/// Identity of an object: kind, namespace (absent for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The kind, as in a manifest.
    pub kind: &'static str,
    /// The namespace; `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Every object a provider currently sees, keyed by identity (so iteration order is stable).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Store {
    objects: BTreeMap<ObjectKey, Object>,
}

/// An identity by reference, ordered as [`ObjectKey`] is: lookups and kind ranges in the
/// [`Store`] borrow their key instead of building an owned one per call.
trait Identity {
    fn parts(&self) -> (&str, Option<&str>, &str);
}

impl Identity for ObjectKey {
    fn parts(&self) -> (&str, Option<&str>, &str) {
        (self.kind, self.namespace.as_deref(), &self.name)
    }
}

impl Identity for (&str, Option<&str>, &str) {
    fn parts(&self) -> (&str, Option<&str>, &str) {
        *self
    }
}

impl<'a> Borrow<dyn Identity + 'a> for ObjectKey {
    fn borrow(&self) -> &(dyn Identity + 'a) {
        self
    }
}

impl PartialEq for dyn Identity + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn Identity + '_ {}

impl PartialOrd for dyn Identity + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn Identity + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl Store {
    /// Adds `object`; if one with the same identity is already there, keeps the first and
    /// returns the identity as the error.
    pub fn insert(&mut self, object: Object) -> Result<(), ObjectKey> {
        match self.objects.entry(object.key()) {
            std::collections::btree_map::Entry::Occupied(slot) => Err(slot.key().clone()),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(object);
                Ok(())
            }
        }
    }

    /// Adds `object`, replacing any with the same identity.
    pub fn upsert(&mut self, object: Object) {
        self.objects.insert(object.key(), object);
    }

    /// The object `key`, if it is there.
    pub fn get(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.get(key)
    }

    /// Takes the object `key` out, if it is there.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<Object> {
        self.objects.remove(key)
    }

    /// How many objects there are.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The objects of one kind, in key order: a range of the map, not a scan of it.
    fn of_kind(&self, kind: &'static str) -> impl Iterator<Item = &Object> {
        let first: &dyn Identity = &(kind, None, "");
        self.objects
            .range::<dyn Identity, _>((Bound::Included(first), Bound::Unbounded))
            .take_while(move |(key, _)| key.kind == kind)
            .map(|(_, object)| object)
    }

    fn lookup(&self, kind: &'static str, namespace: &str, name: &str) -> Option<&Object> {
        self.objects
            .get(&(kind, Some(namespace), name) as &dyn Identity)
    }

    /// The Ingresses.
    pub fn ingresses(&self) -> impl Iterator<Item = &Ingress> {
        self.of_kind("Ingress").filter_map(|o| match o {
            Object::Ingress(i) => Some(i),
            _ => None,
        })
    }

    /// The IngressClasses.
    pub fn ingress_classes(&self) -> impl Iterator<Item = &IngressClass> {
        self.of_kind("IngressClass").filter_map(|o| match o {
            Object::IngressClass(c) => Some(c),
            _ => None,
        })
    }

    /// The EndpointSlices.
    pub fn endpoint_slices(&self) -> impl Iterator<Item = &EndpointSlice> {
        self.of_kind("EndpointSlice").filter_map(|o| match o {
            Object::EndpointSlice(s) => Some(s),
            _ => None,
        })
    }

    /// The IngressRoutes.
    pub fn ingress_routes(&self) -> impl Iterator<Item = &IngressRoute> {
        self.of_kind("IngressRoute").filter_map(|o| match o {
            Object::IngressRoute(r) => Some(r),
            _ => None,
        })
    }

    /// The Middlewares.
    pub fn middlewares(&self) -> impl Iterator<Item = &Middleware> {
        self.of_kind("Middleware").filter_map(|o| match o {
            Object::Middleware(m) => Some(m),
            _ => None,
        })
    }

    /// The ServersTransports.
    pub fn servers_transports(&self) -> impl Iterator<Item = &ServersTransport> {
        self.of_kind("ServersTransport").filter_map(|o| match o {
            Object::ServersTransport(t) => Some(t),
            _ => None,
        })
    }

    /// The ServersTransport `namespace/name`.
    pub fn servers_transport(&self, namespace: &str, name: &str) -> Option<&ServersTransport> {
        match self.lookup("ServersTransport", namespace, name) {
            Some(Object::ServersTransport(t)) => Some(t),
            _ => None,
        }
    }

    /// The TLSStores.
    pub fn tls_stores(&self) -> impl Iterator<Item = &TLSStore> {
        self.of_kind("TLSStore").filter_map(|o| match o {
            Object::TlsStore(t) => Some(t),
            _ => None,
        })
    }

    /// The TLSOptions.
    pub fn tls_options(&self) -> impl Iterator<Item = &TLSOption> {
        self.of_kind("TLSOption").filter_map(|o| match o {
            Object::TlsOption(t) => Some(t),
            _ => None,
        })
    }

    /// The TLSOption `namespace/name`.
    pub fn tls_option(&self, namespace: &str, name: &str) -> Option<&TLSOption> {
        match self.lookup("TLSOption", namespace, name) {
            Some(Object::TlsOption(t)) => Some(t),
            _ => None,
        }
    }

    /// The TraefikService `namespace/name`.
    pub fn traefik_service(&self, namespace: &str, name: &str) -> Option<&TraefikService> {
        match self.lookup("TraefikService", namespace, name) {
            Some(Object::TraefikService(t)) => Some(t),
            _ => None,
        }
    }

    /// The Middleware `namespace/name`.
    pub fn middleware(&self, namespace: &str, name: &str) -> Option<&Middleware> {
        match self.lookup("Middleware", namespace, name) {
            Some(Object::Middleware(m)) => Some(m),
            _ => None,
        }
    }

    /// The ConfigMap `namespace/name`.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        match self.lookup("ConfigMap", namespace, name) {
            Some(Object::ConfigMap(c)) => Some(c),
            _ => None,
        }
    }

    /// The Secret `namespace/name`.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        match self.lookup("Secret", namespace, name) {
            Some(Object::Secret(s)) => Some(s),
            _ => None,
        }
    }

    /// The Service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        match self.lookup("Service", namespace, name) {
            Some(Object::Service(s)) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &str, namespace: &str, name: &str) -> Object {
        let doc = serde_json::json!({
            "apiVersion": if kind == "Service" { "v1" } else { "networking.k8s.io/v1" },
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
        });
        match kind {
            "Service" => Object::Service(serde_json::from_value(doc).unwrap()),
            "Ingress" => Object::Ingress(serde_json::from_value(doc).unwrap()),
            _ => Object::IngressClass(serde_json::from_value(doc).unwrap()),
        }
    }

    #[test]
    fn kind_ranges_and_lookups_find_exactly_their_objects() {
        let mut store = Store::default();
        for (kind, ns, name) in [
            ("Service", "b", "web"),
            ("Ingress", "a", "web"),
            ("IngressClass", "", "fjord"),
            ("Service", "a", "web"),
            ("Service", "a", "api"),
            ("Ingress", "b", "shop"),
        ] {
            store.upsert(object(kind, ns, name));
        }
        let names = |it: Vec<&ObjectMeta>| -> Vec<String> {
            it.iter()
                .map(|m| {
                    format!(
                        "{}/{}",
                        m.namespace.as_deref().unwrap_or_default(),
                        m.name.as_deref().unwrap_or_default()
                    )
                })
                .collect()
        };
        assert_eq!(
            names(store.ingresses().map(|i| &i.metadata).collect()),
            ["a/web", "b/shop"]
        );
        assert_eq!(
            store.ingress_classes().count(),
            1,
            "IngressClass is not Ingress"
        );
        assert!(store.endpoint_slices().next().is_none());
        assert_eq!(
            store
                .service("a", "web")
                .map(|s| s.metadata.namespace.as_deref()),
            Some(Some("a"))
        );
        assert_eq!(
            store
                .service("b", "web")
                .map(|s| s.metadata.namespace.as_deref()),
            Some(Some("b"))
        );
        assert!(store.service("b", "api").is_none());
        assert!(
            store.service("a", "shop").is_none(),
            "an Ingress is not a Service"
        );
    }
}
