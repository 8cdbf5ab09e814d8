//! The last good version of every object: what keeps an invalid update from taking anything
//! away. An object a provider could not read, an Ingress or IngressRoute whose new version is
//! rejected, and a TLS Secret that stops parsing are all served as they last were, the one
//! way for every kind of failure.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;

use super::Translation;
use crate::crd::IngressRoute;
use crate::provider::{Object, ObjectKey, Store};

/// The objects last served, each in its last good version.
#[derive(Clone, Debug, Default)]
pub struct LastGood(Store);

impl LastGood {
    /// Puts in `store` the last good version of each object in `unreadable` (those a provider
    /// could not read anew), and returns the ones it had.
    pub fn stand_in(
        &self,
        store: &mut Store,
        unreadable: &BTreeSet<ObjectKey>,
    ) -> BTreeSet<ObjectKey> {
        unreadable
            .iter()
            .filter_map(|key| {
                let old = self.0.get(key)?;
                store.upsert(old.clone());
                Some(key.clone())
            })
            .collect()
    }

    /// What to keep after `translation` of `store` is served: `store`, with each rejected
    /// object in its last good version, or left out when it has none.
    pub fn next(mut self, mut store: Store, translation: &Translation) -> Self {
        for key in &translation.rejected {
            match self.0.remove(key) {
                Some(old) => store.upsert(old),
                None => {
                    store.remove(key);
                }
            }
        }
        Self(store)
    }

    pub(super) fn ingress(&self, key: &ObjectKey) -> Option<&Ingress> {
        match self.0.get(key)? {
            Object::Ingress(i) => Some(i),
            _ => None,
        }
    }

    pub(super) fn ingress_route(&self, key: &ObjectKey) -> Option<&IngressRoute> {
        match self.0.get(key)? {
            Object::IngressRoute(i) => Some(i),
            _ => None,
        }
    }

    pub(super) fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.0.secret(namespace, name)
    }
}

/// What a rejected object's diagnostics add when its last good version is served instead.
pub(super) fn suffix(kept: bool) -> &'static str {
    if kept {
        "; still serving its last good version"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::manifests::parse_documents;

    fn object(yaml: &str) -> Object {
        let mut out = Vec::new();
        crate::provider::decode::decode(parse_documents(yaml).unwrap().remove(0), "t", &mut out);
        match out.remove(0) {
            crate::provider::decode::Decoded::Object(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unreadable_object_is_served_as_it_last_was_until_it_is_gone() {
        let web = object(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n",
        );
        let key = web.key();
        let mut served = Store::default();
        served.upsert(web.clone());
        let last = LastGood::default().next(served, &Translation::default());

        // The file holding it stops parsing: it is unreadable, and stands in.
        let mut store = Store::default();
        let stood = last.stand_in(&mut store, &[key.clone()].into());
        assert_eq!(stood, [key.clone()].into());
        assert_eq!(store.get(&key), Some(&web));
        let last = last.next(store, &Translation::default());

        // The file is removed: nothing names it unreadable, and it is gone for good.
        let mut store = Store::default();
        assert!(last.stand_in(&mut store, &BTreeSet::new()).is_empty());
        let last = last.next(store, &Translation::default());
        let mut store = Store::default();
        assert!(last.stand_in(&mut store, &[key].into()).is_empty());
    }
}
