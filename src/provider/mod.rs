//! Providers gather Kubernetes objects into one [`Store`]. Nothing downstream knows where an
//! object came from: the manifests folder and the API server fill the same store.

pub mod decode;
pub mod kubernetes;
pub mod manifests;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{IngressRoute, Middleware};

/// What one read of a provider produced: the objects, and what was wrong with the input they
/// came from (a file that does not parse; the API server's objects come already parsed).
#[derive(Debug, Default)]
pub struct Loaded {
    pub store: Store,
    pub diagnostics: Vec<crate::diagnostics::Diagnostic>,
    /// Only EndpointSlices changed since the last load: routes stand, endpoints move.
    pub endpoints_only: bool,
}

/// A Kubernetes object fjord reads.
// Every variant is a few hundred bytes, so boxing would buy nothing but an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Ingress(Ingress),
    IngressClass(IngressClass),
    Service(Service),
    EndpointSlice(EndpointSlice),
    /// Kept for TLS termination and basic auth.
    Secret(Secret),
    IngressRoute(IngressRoute),
    Middleware(Middleware),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Ingress(_) => "Ingress",
            Object::IngressClass(_) => "IngressClass",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Secret(_) => "Secret",
            Object::IngressRoute(_) => "IngressRoute",
            Object::Middleware(_) => "Middleware",
        }
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Ingress(o) => &o.metadata,
            Object::IngressClass(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::IngressRoute(o) => &o.metadata,
            Object::Middleware(o) => &o.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Ingress(o) => &mut o.metadata,
            Object::IngressClass(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::IngressRoute(o) => &mut o.metadata,
            Object::Middleware(o) => &mut o.metadata,
        }
    }

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
object_from!(
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Secret,
    IngressRoute,
    Middleware
);

/// Identity of an object: kind, namespace (absent for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: &'static str,
    pub namespace: Option<String>,
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

    pub fn get(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.get(key)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn ingresses(&self) -> impl Iterator<Item = &Ingress> {
        self.objects.values().filter_map(|o| match o {
            Object::Ingress(i) => Some(i),
            _ => None,
        })
    }

    pub fn ingress_classes(&self) -> impl Iterator<Item = &IngressClass> {
        self.objects.values().filter_map(|o| match o {
            Object::IngressClass(c) => Some(c),
            _ => None,
        })
    }

    pub fn endpoint_slices(&self) -> impl Iterator<Item = &EndpointSlice> {
        self.objects.values().filter_map(|o| match o {
            Object::EndpointSlice(s) => Some(s),
            _ => None,
        })
    }

    pub fn ingress_routes(&self) -> impl Iterator<Item = &IngressRoute> {
        self.objects.values().filter_map(|o| match o {
            Object::IngressRoute(r) => Some(r),
            _ => None,
        })
    }

    pub fn middlewares(&self) -> impl Iterator<Item = &Middleware> {
        self.objects.values().filter_map(|o| match o {
            Object::Middleware(m) => Some(m),
            _ => None,
        })
    }

    pub fn middleware(&self, namespace: &str, name: &str) -> Option<&Middleware> {
        match self.objects.get(&key("Middleware", namespace, name)) {
            Some(Object::Middleware(m)) => Some(m),
            _ => None,
        }
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        match self.objects.get(&key("Secret", namespace, name)) {
            Some(Object::Secret(s)) => Some(s),
            _ => None,
        }
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        match self.objects.get(&key("Service", namespace, name)) {
            Some(Object::Service(s)) => Some(s),
            _ => None,
        }
    }
}

fn key(kind: &'static str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: Some(namespace.to_owned()),
        name: name.to_owned(),
    }
}
