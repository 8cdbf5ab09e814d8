//! Which Ingresses are fjord's: by `spec.ingressClassName`, the legacy
//! `kubernetes.io/ingress.class` annotation, or the default IngressClass.

use std::collections::HashSet;

use k8s_openapi::api::networking::v1::Ingress;

use crate::provider::Store;

/// The `spec.controller` of IngressClasses that fjord serves.
pub const CONTROLLER: &str = "fjord.dev/ingress-controller";
const LEGACY_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The class names that are fjord's, and whether one of them is the cluster default.
#[derive(Debug)]
pub struct Classes {
    ours: HashSet<String>,
    default: bool,
}

impl Classes {
    /// `configured` (default `fjord`) is ours even without an IngressClass object, so a folder
    /// of manifests works without one; an IngressClass of that name for another controller
    /// takes it away. The classes `also` are ours whatever their IngressClass says: another
    /// controller's (`nginx`), served during a move off it.
    pub fn new(store: &Store, configured: &str, also: &[String]) -> Self {
        let mut ours = HashSet::new();
        let mut default = false;
        let mut configured_taken = false;
        for class in store.ingress_classes() {
            let name = class.metadata.name.as_deref().unwrap_or_default();
            let controller = class.spec.as_ref().and_then(|s| s.controller.as_deref());
            if name == configured {
                configured_taken = true;
            }
            if controller == Some(CONTROLLER) {
                ours.insert(name.to_owned());
                let annotations = class.metadata.annotations.as_ref();
                default |= annotations
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true");
            }
        }
        if !configured_taken {
            ours.insert(configured.to_owned());
        }
        ours.extend(also.iter().cloned());
        Self { ours, default }
    }

    /// Whether fjord serves `ingress`; an error when its class is named two different ways.
    pub fn accepts(&self, ingress: &Ingress) -> Result<bool, String> {
        let field = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref());
        let annotation = ingress
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEGACY_ANNOTATION))
            .map(String::as_str);
        match (field, annotation) {
            (Some(f), Some(a)) if f != a => Err(format!(
                "spec.ingressClassName {f:?} and annotation {LEGACY_ANNOTATION} {a:?} disagree"
            )),
            (Some(class), _) | (None, Some(class)) => Ok(self.ours.contains(class)),
            (None, None) => Ok(self.default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Object;

    fn ingress(class: Option<&str>, annotation: Option<&str>) -> Ingress {
        let mut i = Ingress {
            spec: Some(k8s_openapi::api::networking::v1::IngressSpec {
                ingress_class_name: class.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(a) = annotation {
            i.metadata.annotations = Some([(LEGACY_ANNOTATION.to_owned(), a.to_owned())].into());
        }
        i
    }

    fn class(name: &str, controller: &str, default: bool) -> Object {
        let mut c = k8s_openapi::api::networking::v1::IngressClass::default();
        c.metadata.name = Some(name.into());
        if default {
            c.metadata.annotations =
                Some([(DEFAULT_CLASS_ANNOTATION.to_owned(), "true".to_owned())].into());
        }
        c.spec = Some(k8s_openapi::api::networking::v1::IngressClassSpec {
            controller: Some(controller.into()),
            parameters: None,
        });
        Object::IngressClass(c)
    }

    #[test]
    fn configured_name_serves_without_an_ingress_class_object() {
        let classes = Classes::new(&Store::default(), "fjord", &[]);
        assert_eq!(classes.accepts(&ingress(Some("fjord"), None)), Ok(true));
        assert_eq!(classes.accepts(&ingress(None, Some("fjord"))), Ok(true));
        assert_eq!(classes.accepts(&ingress(Some("nginx"), None)), Ok(false));
        assert_eq!(classes.accepts(&ingress(None, None)), Ok(false));
    }

    #[test]
    fn classes_follow_their_controller_and_default_flag() {
        let mut store = Store::default();
        store
            .insert(class("fjord", "traefik.io/ingress-controller", false))
            .unwrap();
        store.insert(class("edge", CONTROLLER, true)).unwrap();
        let classes = Classes::new(&store, "fjord", &[]);
        assert_eq!(classes.accepts(&ingress(Some("fjord"), None)), Ok(false));
        assert_eq!(classes.accepts(&ingress(Some("edge"), None)), Ok(true));
        assert_eq!(classes.accepts(&ingress(None, None)), Ok(true));
        assert!(
            classes
                .accepts(&ingress(Some("edge"), Some("fjord")))
                .is_err()
        );
    }
}
