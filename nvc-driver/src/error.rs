//! The crate's one error type.

/// What can go wrong in driver discovery and device selection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `--device` token that names no device (upstream's wording).
    #[error("{token}: unknown device")]
    UnknownDevice {
        /// The token as given.
        token: String,
    },
    /// A PCI bus id that does not parse.
    #[error("invalid PCI bus id {input:?} (expected [domain:]bus:device[.0] in hex)")]
    InvalidBusId {
        /// The text given.
        input: String,
    },
    /// A requirement expression that does not parse (upstream: "invalid expression").
    #[error("invalid expression: {expr:?}: {reason}")]
    InvalidRequirement {
        /// The whole expression.
        expr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A requirement the host does not meet.
    #[error(
        "unsatisfied condition: {condition}{}",
        if *hint { ", please update your driver to a newer version, or use an earlier cuda container" } else { "" }
    )]
    Unsatisfied {
        /// The expression's first group, as upstream quotes it.
        condition: String,
        /// Whether it is a `cuda>=` condition (upstream adds advice).
        hint: bool,
    },
}
