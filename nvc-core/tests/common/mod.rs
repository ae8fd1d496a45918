//! Set-up shared by nvc-core's test binaries.

use std::path::Path;

use nvc_core::{Context, Driver};

/// The driver of the (simulated) host at `root`, through the builder's defaults.
pub fn driver(root: &Path) -> Driver {
    Context::builder()
        .root(root)
        .build()
        .unwrap()
        .driver()
        .unwrap()
}
