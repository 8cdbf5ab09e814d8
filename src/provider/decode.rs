//! Turns one parsed YAML/JSON document into a typed Kubernetes object, strictly: a missing
//! required field, a wrong type or an unknown field is an error naming the field.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Object, ObjectKey};
use crate::diagnostics::Diagnostic;

/// What one document turned out to be.
#[allow(clippy::large_enum_variant)] // short-lived, one per document
#[derive(Debug)]
pub enum Decoded {
    /// An object fjord reads.
    Object(Object),
    /// A kind fjord does not read (a Deployment next to the Ingress, say).
    Ignored,
    /// A kind fjord does not read but its reader may expect it to: Traefik's, or one of
    /// `fjord.dev`'s that does not exist. Named, never passed over in silence.
    Unread(Diagnostic),
    /// A kind fjord reads, but the document is not a valid one. `key` is known when the
    /// document at least names itself, so a provider can keep that object's last good version.
    Invalid {
        /// Its identity, when that much could be read.
        key: Option<ObjectKey>,
        /// What is wrong with it.
        diagnostic: Diagnostic,
    },
}

/// Decodes `doc` (from `origin`, a file name or API path, used in diagnostics) into `out`.
/// A `v1 List` contributes one entry per item.
pub fn decode(doc: Value, origin: &str, out: &mut Vec<Decoded>) {
    let invalid = |message: String| Decoded::Invalid {
        key: None,
        diagnostic: Diagnostic::error(origin, message),
    };
    let Value::Object(map) = &doc else {
        out.push(invalid("document is not a mapping".into()));
        return;
    };
    let text = |key| map.get(key).and_then(Value::as_str).map(str::to_owned);
    let (Some(api_version), Some(kind)) = (text("apiVersion"), text("kind")) else {
        out.push(invalid("document has no apiVersion and kind".into()));
        return;
    };
    let (kind, namespaced): (&'static str, bool) = match (api_version.as_str(), kind.as_str()) {
        ("v1", "List") => {
            decode_list(doc, origin, out);
            return;
        }
        ("networking.k8s.io/v1", "IngressClass") => ("IngressClass", false),
        ("networking.k8s.io/v1", "Ingress") => ("Ingress", true),
        ("v1", "Service") => ("Service", true),
        ("v1", "Secret") => ("Secret", true),
        ("v1", "ConfigMap") => ("ConfigMap", true),
        ("discovery.k8s.io/v1", "EndpointSlice") => ("EndpointSlice", true),
        ("fjord.dev/v1alpha1", "IngressRoute") => ("IngressRoute", true),
        ("fjord.dev/v1alpha1", "Middleware") => ("Middleware", true),
        ("fjord.dev/v1alpha1", "TraefikService") => ("TraefikService", true),
        ("fjord.dev/v1alpha1", "ServersTransport") => ("ServersTransport", true),
        ("fjord.dev/v1alpha1", "TLSOption") => ("TLSOption", true),
        ("fjord.dev/v1alpha1", "TLSStore") => ("TLSStore", true),
        (_, "Ingress" | "IngressClass" | "EndpointSlice") => {
            out.push(invalid(format!(
                "{kind} apiVersion {api_version:?} is not served; use {}",
                if kind == "EndpointSlice" {
                    "discovery.k8s.io/v1"
                } else {
                    "networking.k8s.io/v1"
                }
            )));
            return;
        }
        ("fjord.dev/v1alpha1", _) => {
            out.push(Decoded::Unread(Diagnostic::warning(
                origin,
                format!(
                    "fjord.dev/v1alpha1 {kind} is not a kind fjord reads (IngressRoute, Middleware, TraefikService, ServersTransport, TLSOption, TLSStore); ignored"
                ),
            )));
            return;
        }
        (traefik @ ("traefik.io/v1alpha1" | "traefik.containo.us/v1alpha1"), _) => {
            out.push(Decoded::Unread(Diagnostic::warning(
                origin,
                format!(
                    "{traefik} {kind} is Traefik's; fjord reads its IngressRoute, Middleware, TraefikService, ServersTransport, TLSOption and TLSStore as apiVersion fjord.dev/v1alpha1; ignored"
                ),
            )));
            return;
        }
        _ => {
            tracing::debug!(origin, %api_version, %kind, "ignoring a kind fjord does not read");
            out.push(Decoded::Ignored);
            return;
        }
    };
    out.push(decode_object(doc, kind, namespaced, origin));
}

fn decode_list(doc: Value, origin: &str, out: &mut Vec<Decoded>) {
    let items = match doc {
        Value::Object(mut map) => map.remove("items"),
        _ => None,
    };
    match items {
        Some(Value::Array(items)) => {
            for item in items {
                decode(item, origin, out);
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => out.push(Decoded::Invalid {
            key: None,
            diagnostic: Diagnostic::error(origin, "List items is not a sequence"),
        }),
    }
}

fn decode_object(mut doc: Value, kind: &'static str, namespaced: bool, origin: &str) -> Decoded {
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Decoded::Invalid {
            key: None,
            diagnostic: Diagnostic::error(origin, format!("{kind} has no metadata.name")),
        };
    };
    // Like `kubectl apply`, an object without a namespace lands in `default`.
    let namespace = namespaced.then(|| {
        let ns = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or("default")
            .to_owned();
        if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        ns
    });
    let key = ObjectKey {
        kind,
        namespace,
        name,
    };
    let result = match kind {
        "Ingress" => typed(&doc).map(Object::Ingress),
        "IngressClass" => typed(&doc).map(Object::IngressClass),
        "Service" => typed(&doc).map(Object::Service),
        "EndpointSlice" => typed(&doc).map(Object::EndpointSlice),
        "IngressRoute" => typed(&doc).map(Object::IngressRoute),
        "Middleware" => typed(&doc).map(Object::Middleware),
        "TraefikService" => typed(&doc).map(Object::TraefikService),
        "ServersTransport" => typed(&doc).map(Object::ServersTransport),
        "TLSOption" => typed(&doc).map(Object::TlsOption),
        "TLSStore" => typed(&doc).map(Object::TlsStore),
        "ConfigMap" => typed(&doc).map(Object::ConfigMap),
        _ => {
            unwrap_base64(&mut doc);
            typed(&doc).map(Object::Secret)
        }
    };
    match result {
        Ok(object) => Decoded::Object(object),
        Err(message) => Decoded::Invalid {
            diagnostic: Diagnostic::error(key.to_string(), message),
            key: Some(key),
        },
    }
}

/// Removes the line breaks and spaces in a Secret's base64 `data` values. The API server's
/// decoder skips them (a certificate's base64 is often wrapped at 76 columns, as `base64`
/// writes it); the strict one behind the typed Secret would refuse the whole Secret.
fn unwrap_base64(doc: &mut Value) {
    let Some(data) = doc.get_mut("data").and_then(Value::as_object_mut) else {
        return;
    };
    for value in data.values_mut() {
        if let Value::String(text) = value
            && text.contains(|c: char| c.is_ascii_whitespace())
        {
            text.retain(|c| !c.is_ascii_whitespace());
        }
    }
}

/// Deserializes `doc` into `T`, then serializes it back: any key of the input that did not
/// survive the round trip is a field `T` does not have, which the typed decode silently dropped.
fn typed<T: DeserializeOwned + serde::Serialize>(doc: &Value) -> Result<T, String> {
    let value: T = serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })?;
    let back = serde_json::to_value(&value).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    unknown_fields(doc, &back, &mut String::new(), &mut unknown);
    match unknown.as_slice() {
        [] => Ok(value),
        [one] => Err(format!("{one}: unknown field")),
        many => Err(format!("unknown fields: {}", many.join(", "))),
    }
}

fn unknown_fields(input: &Value, known: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(input), Value::Object(known)) => {
            for (key, value) in input {
                if value.is_null() {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match known.get(key) {
                    Some(k) => unknown_fields(value, k, path, out),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(input), Value::Array(known)) => {
            for (i, (value, k)) in input.iter().zip(known).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                unknown_fields(value, k, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(yaml: &str) -> Decoded {
        let doc: Value = serde_saphyr::from_str(yaml).unwrap();
        let mut out = Vec::new();
        decode(doc, "test.yaml", &mut out);
        assert_eq!(out.len(), 1);
        out.pop().unwrap()
    }

    fn message(d: Decoded) -> String {
        match d {
            Decoded::Invalid { diagnostic, .. } => diagnostic.to_string(),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn decodes_an_ingress_into_the_default_namespace() {
        let d = one(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: shop}\nspec:\n  rules: [{host: a.example.com}]\n",
        );
        let Decoded::Object(o) = d else {
            panic!("{d:?}")
        };
        assert_eq!(o.key().to_string(), "Ingress default/shop");
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let d = one(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: shop}\nspec:\n  rules:\n  - http:\n      paths:\n      - path: /\n        pathType: Prefix\n        pathtyp: Exact\n        backend: {service: {name: web, port: {number: 80}}}\n",
        );
        assert_eq!(
            message(d),
            "error: Ingress default/shop: spec.rules[0].http.paths[0].pathtyp: unknown field"
        );
    }

    #[test]
    fn wrong_type_is_named_with_its_path() {
        let d = one(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: shop, namespace: prod}\nspec:\n  rules:\n  - http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {service: {name: web, port: {number: eighty}}}\n",
        );
        let m = message(d);
        assert!(
            m.starts_with("error: Ingress prod/shop: spec.rules[0].http.paths[0].backend.service.port.number: invalid type"),
            "{m}"
        );
    }

    #[test]
    fn traefiks_kinds_and_unknown_fjord_kinds_are_named() {
        for (doc, words) in [
            (
                "apiVersion: fjord.dev/v1alpha1\nkind: IngressRouteTCP\nmetadata: {name: default}\n",
                "fjord.dev/v1alpha1 IngressRouteTCP is not a kind fjord reads",
            ),
            (
                "apiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {name: x}\n",
                "traefik.io/v1alpha1 Middleware is Traefik's",
            ),
        ] {
            let Decoded::Unread(d) = one(doc) else {
                panic!("{doc}")
            };
            assert!(d.to_string().contains(words), "{d}");
        }
    }

    #[test]
    fn other_kinds_are_ignored_and_lists_are_expanded() {
        assert!(matches!(
            one("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"),
            Decoded::Ignored
        ));
        let doc: Value = serde_saphyr::from_str(
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}, spec: {ports: [{port: 80}]}}\n- {apiVersion: v1, kind: Pod, metadata: {name: b}}\n",
        )
        .unwrap();
        let mut out = Vec::new();
        decode(doc, "list.yaml", &mut out);
        assert!(matches!(&out[0], Decoded::Object(Object::Service(_))));
        assert!(matches!(&out[1], Decoded::Ignored));
    }

    #[test]
    fn old_ingress_api_version_is_explained() {
        let m = message(one(
            "apiVersion: networking.k8s.io/v1beta1\nkind: Ingress\nmetadata: {name: old}\n",
        ));
        assert!(m.contains("networking.k8s.io/v1"), "{m}");
    }

    #[test]
    fn nameless_and_non_mapping_documents_are_errors() {
        assert!(
            message(one("apiVersion: v1\nkind: Service\nmetadata: {}\n")).contains("metadata.name")
        );
        assert!(message(one("- a\n- b\n")).contains("not a mapping"));
    }
}
