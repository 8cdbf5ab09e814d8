//! One ACME conversation: the account (created once, then restored from storage) and an order
//! for a set of names, answered with HTTP-01 or TLS-ALPN-01.

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, Order, OrderStatus, RetryPolicy,
};

use super::challenge::Challenges;
use super::storage::{Answer, Storage};
use crate::config::{Acme, KeyType};

/// Why an ACME step failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum AcmeError {
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

impl AcmeError {
    /// The error with every cause below it, as an operator reads it in `GET /acme` and the
    /// logs: instant-acme's own text for a failed connection is only `client error
    /// (Connect)`, and the CA's URL and the refused connection are in its causes.
    pub(super) fn describe(&self, ca_server: &str) -> String {
        let mut text = match self {
            AcmeError::Acme(e) => format!("ACME server {ca_server}: {e}"),
            other => other.to_string(),
        };
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            let more = e.to_string();
            // thiserror's `{0}` has usually printed the first cause already.
            if !text.ends_with(&more) {
                text = format!("{text}: {more}");
            }
            cause = e.source();
        }
        text
    }
}

/// The resolver's account: restored from storage, or created and stored.
pub(super) async fn account<S: Storage>(config: &Acme, storage: &S) -> Result<Account, AcmeError> {
    let builder = || match config.ca_certificates.first() {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    };
    let restore = async |stored: Vec<u8>| -> Result<Account, AcmeError> {
        let credentials: AccountCredentials = serde_json::from_slice(&stored)
            .map_err(|e| AcmeError::Other(format!("the stored account does not parse: {e}")))?;
        Ok(builder()?.from_credentials(credentials).await?)
    };
    if let Some(stored) = storage.account().await? {
        return restore(stored).await;
    }
    // One instance creates it; the others find it once the lock is theirs.
    let _lock = storage.lock_account().await?;
    if let Some(stored) = storage.account().await? {
        return restore(stored).await;
    }
    let contact = format!("mailto:{}", config.email);
    let contacts: Vec<&str> = if config.email.is_empty() {
        vec![]
    } else {
        vec![contact.as_str()]
    };
    let new = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = builder()?
        .create(&new, config.ca_server.clone(), None)
        .await?;
    let json = serde_json::to_vec(&credentials).map_err(|e| AcmeError::Other(e.to_string()))?;
    storage.put_account(&json).await?;
    tracing::info!(ca = %config.ca_server, "acme: account created");
    Ok(account)
}

/// Orders a certificate for `names` and returns (PEM chain, PEM private key). The challenge
/// answers are given by every instance sharing `storage` before the CA is told to look.
pub(super) async fn obtain<S: Storage>(
    account: &Account,
    config: &Acme,
    names: &[String],
    challenges: &Challenges,
    storage: &S,
) -> Result<(String, String), AcmeError> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut new_order = NewOrder::new(&identifiers);
    if !config.profile.is_empty() {
        new_order = new_order.profile(&config.profile);
    }
    let mut order = account.new_order(&new_order).await?;
    tracing::info!(?names, "acme: order created");

    let kind = if config.http_challenge.is_some() {
        ChallengeType::Http01
    } else {
        ChallengeType::TlsAlpn01
    };
    let answers = answers(&mut order, &kind).await?;
    let served = Served {
        challenges,
        answers: &answers,
    };
    for answer in &answers {
        answer.install(challenges).map_err(AcmeError::Other)?;
    }
    let primary = names.first().map(String::as_str).unwrap_or_default();
    storage.present(primary, &answers).await?;
    let issued = validate_and_finalize(&mut order, &kind, names, config.key_type).await;
    storage.withdraw(primary).await;
    drop(served);
    issued
}

/// The answers the order's pending authorizations ask for.
async fn answers(order: &mut Order, kind: &ChallengeType) -> Result<Vec<Answer>, AcmeError> {
    let mut answers = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(AcmeError::Other(format!("authorization is {other:?}"))),
        }
        let challenge = authz
            .challenge(kind.clone())
            .ok_or_else(|| AcmeError::Other(format!("the CA offers no {kind:?} challenge")))?;
        let key_authorization = challenge.key_authorization();
        answers.push(match kind {
            ChallengeType::Http01 => Answer::Http01 {
                token: challenge.token.clone(),
                key_authorization: key_authorization.as_str().to_owned(),
            },
            _ => {
                use base64::Engine as _;
                Answer::TlsAlpn01 {
                    name: challenge.identifier().to_string(),
                    digest: base64::engine::general_purpose::STANDARD
                        .encode(key_authorization.digest()),
                }
            }
        });
    }
    Ok(answers)
}

/// Tells the CA the challenges are ready, waits for the order to be, and finalizes it with a
/// new key.
async fn validate_and_finalize(
    order: &mut Order,
    kind: &ChallengeType,
    names: &[String],
    key_type: KeyType,
) -> Result<(String, String), AcmeError> {
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        if let Some(mut challenge) = authz.challenge(kind.clone()) {
            let name = challenge.identifier().to_string();
            challenge.set_ready().await?;
            tracing::info!(name, challenge = ?kind, "acme: challenge ready");
        }
    }
    let retry = RetryPolicy::new().timeout(std::time::Duration::from_secs(90));
    let status = order.poll_ready(&retry).await?;
    if status != OrderStatus::Ready {
        let detail = order
            .state()
            .error
            .as_ref()
            .map(std::string::ToString::to_string)
            .unwrap_or_default();
        return Err(AcmeError::Other(format!(
            "order is {status:?}, not ready {detail}"
        )));
    }
    let (csr, key_pem) = csr(names, key_type)?;
    order.finalize_csr(&csr).await?;
    let chain = order.poll_certificate(&retry).await?;
    tracing::info!(?names, "acme: certificate issued");
    Ok((chain, key_pem))
}

/// A CSR for `names` with a new key of `key_type`.
fn csr(names: &[String], key_type: KeyType) -> Result<(Vec<u8>, String), AcmeError> {
    let key = match key_type {
        KeyType::EC256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EC384 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyType::RSA2048 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        KeyType::RSA4096 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
        }
    }
    .map_err(|e| AcmeError::Other(format!("key generation: {e}")))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    Ok((csr.der().to_vec(), key.serialize_pem()))
}

/// Stops this instance giving an order's answers however the order ends.
struct Served<'a> {
    challenges: &'a Challenges,
    answers: &'a [Answer],
}

impl Drop for Served<'_> {
    fn drop(&mut self) {
        for answer in self.answers {
            answer.uninstall(self.challenges);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_for_each_key_type() {
        for key_type in [KeyType::EC256, KeyType::EC384, KeyType::RSA2048] {
            let (csr, key) = csr(&["a.example.com".to_owned()], key_type).unwrap();
            assert!(!csr.is_empty());
            assert!(
                key.starts_with("-----BEGIN PRIVATE KEY-----"),
                "{key_type:?}"
            );
        }
    }
}
