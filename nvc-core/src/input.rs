//! Typed inputs, parsed when they are given: device lists and image requirements.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Step};

/// A device list in `--device` / `NVIDIA_VISIBLE_DEVICES` syntax: comma-separated GPU
/// indices, UUIDs (`GPU-...`), PCI bus ids, MIG devices (`MIG-...` or `gpu:mig`), or
/// `all`. Several lists add up ([`Devices::add`]).
///
/// ```
/// let devices: nvc_core::Devices = "0,GPU-8a3f,1:0".parse()?;
/// assert!("0,sda".parse::<nvc_core::Devices>().is_err());
/// # Ok::<(), nvc_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Devices {
    pub(crate) request: nvc_driver::DeviceRequest,
    text: Vec<String>,
}

impl Devices {
    /// Every GPU and MIG device.
    #[must_use]
    pub fn all() -> Self {
        let mut d = Devices::default();
        // "all" always parses.
        let _ = d.add("all");
        d
    }

    /// Parses one more list and adds it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) naming the first token that
    /// is no device spelling (`device error: sda: unknown device`).
    pub fn add(&mut self, list: &str) -> Result<(), Error> {
        self.request
            .add(list)
            .map_err(|e| Error::driver(Step::Device, e))?;
        self.text.push(list.to_owned());
        Ok(())
    }

    /// Whether no device is named.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.request.specs().next().is_none()
    }
}

impl FromStr for Devices {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let mut d = Devices::default();
        d.add(s)?;
        Ok(d)
    }
}

impl fmt::Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text.join(","))
    }
}

/// An image requirement in `NVIDIA_REQUIRE_*` syntax: space-separated alternatives of
/// comma-separated terms over `cuda`, `driver`, `arch` and `brand`
/// (`cuda>=12.0 brand=tesla,driver>=470`).
///
/// ```
/// let r: nvc_core::Requirement = "cuda>=12.0 brand=nvidia,driver>=535".parse()?;
/// assert!("cuda>>12".parse::<nvc_core::Requirement>().is_err());
/// # Ok::<(), nvc_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub(crate) parsed: nvc_driver::Requirement,
    text: String,
}

impl FromStr for Requirement {
    type Err = Error;

    /// # Errors
    ///
    /// [`ErrorKind::BadInput`](crate::ErrorKind::BadInput) naming the expression and
    /// what is wrong with it.
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(Requirement {
            parsed: nvc_driver::Requirement::parse(s)
                .map_err(|e| Error::driver(Step::Requirement, e))?,
            text: s.to_owned(),
        })
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
