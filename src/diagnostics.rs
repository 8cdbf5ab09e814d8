//! Diagnostics: what fjord says about an object it could not (fully) use.

use std::fmt;

/// How bad a diagnostic is. `fjord check` exits non-zero when any is an [`Severity::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The object, or the part of it named, is not served as written.
    Error,
    /// Served, but probably not as the author meant (a missing Service, a shadowed path).
    Warning,
}

/// One finding about one object: `Ingress default/shop: rules[0].host "A_B" is not a valid DNS name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The object (`Ingress default/shop`) or, before an object could be read, the file.
    pub subject: String,
    /// The field, the bad value and what is wrong with it.
    pub message: String,
}

impl Diagnostic {
    pub fn error(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            subject: subject.into(),
            message: message.into(),
        }
    }

    pub fn warning(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            subject: subject.into(),
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.subject, self.message)
    }
}
